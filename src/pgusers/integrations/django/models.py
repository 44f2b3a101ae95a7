"""pgusers' users as a Django model, for reading and for references.

:class:`User` is unmanaged: Django's migrations never create, change or drop
pgusers' tables (pgusers creates and migrates them itself, from this app's first
migration), and the model refuses to save or delete. Change users through pgusers
(:func:`pgusers.integrations.django.userspace`), which keeps its rules: normalised
names, hashed passwords, the audit trail, ended sessions.
"""

from collections.abc import Iterator
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.utils.crypto import salted_hmac

from pgusers._errors import BadCallError
from pgusers.integrations.django._base import PgUserBehaviour, _setting


def table() -> str:
    """The users table as Django quotes it: ``"<schema>"."users"``."""
    return f'{_setting("SCHEMA")}"."users'


class User(PgUserBehaviour, models.Model):
    """A pgusers user. ``userid`` is the primary key; ``admin`` is what ``is_staff``
    and ``is_superuser`` answer. Read-only."""

    userid = models.BigAutoField(primary_key=True)
    username = models.TextField()
    email = models.TextField()
    admin = models.BooleanField(default=False)
    disabled = models.BooleanField(default=False)
    email_verified = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    extra_data = models.JSONField(null=True)
    password_hash = models.TextField(editable=False)
    generation = models.BigIntegerField(editable=False)
    """Moves on when all the user's sessions are ended."""

    objects: ClassVar[models.Manager["User"]]

    class Meta:
        managed = False
        db_table = table()
        verbose_name = "user"
        ordering = ("userid",)

    @classmethod
    def loaded(cls, *, userid: int, username: str, admin: bool | None) -> "User":
        """A user from what a session check or a login already knows; the fields
        not given load from the database when first read."""
        known: dict[str, Any] = {"userid": userid, "username": username}
        if admin is not None:
            known["admin"] = admin
        fields = [field.attname for field in cls._meta.concrete_fields]
        values = [known.get(name, models.DEFERRED) for name in fields]
        return cls.from_db(None, fields, values)

    @property
    def id(self) -> int:
        return self.userid

    @property
    def is_staff(self) -> bool:
        return bool(self.admin)

    def get_session_auth_hash(self) -> str:
        """A digest that changes when the password changes or the user's sessions are
        all ended, so a Django session made with ``login()`` ends with them (Django
        compares it on each request when its own sessions are in use)."""
        return self._session_auth_hash(settings.SECRET_KEY)

    def get_session_auth_fallback_hash(self) -> Iterator[str]:
        """The same digest under each of ``SECRET_KEY_FALLBACKS``."""
        for secret in settings.SECRET_KEY_FALLBACKS:
            yield self._session_auth_hash(secret)

    def _session_auth_hash(self, secret: str) -> str:
        found = (
            type(self)
            ._base_manager.using(self._state.db)
            .filter(pk=self.pk)
            .values_list("password_hash", "generation")
            .first()
        )
        return salted_hmac(
            "pgusers.integrations.django.models.User.get_session_auth_hash",
            repr(found),
            secret=secret,
            algorithm="sha256",
        ).hexdigest()

    def save(self, *args: Any, update_fields: Any = None, **kwargs: Any) -> None:
        if update_fields is not None and set(update_fields) <= {"last_login"}:
            return  # Django's login() stamps the time; pgusers' audit trail has it
        raise BadCallError("pgusers users are changed through pgusers, not saved by Django")

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise BadCallError("pgusers users are deleted through pgusers (delete_user)")
