"""What the Django integration's parts share: its settings and the behaviour of a
signed-in user (kept apart so that the model can use them before the rest loads)."""

from typing import Any, Final

from django.conf import settings

from pgusers.integrations._common import COOKIE_NAME

DEFAULTS: Final[dict[str, Any]] = {
    "DSN": None,
    "SCHEMA": "pgusers",
    "COOKIE_NAME": COOKIE_NAME,
    "COOKIE_SECURE": True,
    "OPTIONS": {},
}


def _setting(name: str) -> Any:
    configured = getattr(settings, "PGUSERS", {})
    return configured.get(name, DEFAULTS[name])


class PgUserBehaviour:
    """What Django's code asks of a signed-in user, shared by :class:`PgUser` and the
    :class:`~.models.User` model. ``session_data`` and ``key`` are those of the
    request's session (None for a user not read from a cookie)."""

    is_active = True
    is_authenticated = True
    is_anonymous = False
    session_data: Any = None
    key: str | None = None
    auth_methods: tuple[str, ...] = ()
    """How the user of the request's session proved who they are."""
    authenticated_at: float | None = None
    """When they last did (a Unix time): see ``require_recent_auth``."""
    roles: tuple[str, ...] = ()
    """The roles the user holds everywhere (the request's one check)."""
    permissions: frozenset[str] = frozenset()
    """The permissions those roles grant, which ``has_perm`` answers."""
    pk: int
    username: str

    @property
    def is_staff(self) -> bool:
        raise NotImplementedError

    @property
    def is_superuser(self) -> bool:
        return self.is_staff

    def get_username(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj: object = None) -> bool:
        """Whether a role of the user grants ``perm`` (so Django's
        ``permission_required`` guards a view with pgusers' permissions);
        administrators have every permission."""
        return self.is_superuser or perm in self.permissions

    def has_perms(self, perms: Any, obj: object = None) -> bool:
        return all(self.has_perm(perm, obj) for perm in perms)

    def has_module_perms(self, app_label: str) -> bool:
        return self.is_superuser or any(p.startswith(f"{app_label}.") for p in self.permissions)

    def get_all_permissions(self, obj: object = None) -> set[str]:
        return set(self.permissions)

    def __str__(self) -> str:
        return self.username
