"""The userspace's settings as people and programs change them: one table of what
each one is, one reading of what a person types, and one way to apply a set of
changes, for the HTTP API, the console and the command line alike.

"No limit" has one spelling per medium and one meaning everywhere: JSON ``null``,
an empty console field, the word ``none`` on the command line. Zero is a value
like any other, which the userspace refuses where it makes no sense (a maximum
age of 0 seconds).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import methodcaller
from typing import Any, Final

from pgusers._errors import BadCallError


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its name (a field of :class:`~pgusers.Settings`), its unit, whether
    it counts whole things, and what having no value means (None: it needs one)."""

    name: str
    unit: str
    whole: bool
    without_value: str | None


SETTINGS: Final = {
    setting.name: setting
    for setting in (
        Setting("session_ttl", "seconds", False, None),
        Setting("session_max_age", "seconds", False, "sessions have no maximum age"),
        Setting("event_retention", "days", False, "events are kept forever"),
        Setting("sessions_per_user", "sessions", True, "a user may have any number of sessions"),
        Setting("free_failures", "failed logins", True, None),
        Setting("max_backoff", "seconds", False, None),
        Setting("source_limit", "failed logins", True, None),
        Setting("source_window", "seconds", False, None),
        Setting("source_block", "seconds", False, None),
    )
}

POLICY: Final = ("free_failures", "max_backoff", "source_limit", "source_window", "source_block")
"""The settings that make up the login policy, changed together."""

NO_VALUE: Final = frozenset({"", "none"})


def setting(name: str) -> Setting:
    found = SETTINGS.get(name)
    if found is None:
        raise BadCallError(f"there is no setting {name!r}")
    return found


def read(name: str, text: str) -> float | None:
    """A setting's value as a person typed it (a console field, a command-line word):
    a number, or None for nothing or "none" (no limit, where the setting may have
    none)."""
    wanted = setting(name)
    typed = text.strip()
    if typed.lower() in NO_VALUE:
        if wanted.without_value is None:
            raise BadCallError(f"{name} needs a number of {wanted.unit}")
        return None
    try:
        value = float(typed)
    except ValueError:
        extra = ', or "none"' if wanted.without_value else ""
        raise BadCallError(f"{name} must be a number of {wanted.unit}{extra}") from None
    if wanted.whole:
        if not value.is_integer():
            raise BadCallError(f"{name} must be a whole number of {wanted.unit}")
        return int(value)
    return value


Call = Callable[[Any], Any]
"""A call on a userspace: what it returns on a UserSpace, awaitable on an AsyncUserSpace."""

SETTERS: Final = {
    "session_ttl": "set_session_TTL",
    "session_max_age": "set_session_max_age",
    "event_retention": "set_event_retention",
    "sessions_per_user": "set_sessions_per_user",
}
"""The facade method that sets each setting outside the login policy, in order."""


def plan(changes: Mapping[str, object]) -> list[Call]:
    """The calls that make ``changes`` (values by setting name; None for no value), in
    a fixed order, the login policy's as one call. A setting that needs a value and
    has none is refused before anything changes; the userspace checks the rest."""
    for name, value in changes.items():
        if value is None and setting(name).without_value is None:
            raise BadCallError(f"{name} needs a number of {setting(name).unit}")
    calls: list[Call] = [
        methodcaller(setter, changes[name]) for name, setter in SETTERS.items() if name in changes
    ]
    policy = {name: changes[name] for name in POLICY if name in changes}
    if policy:
        calls.append(methodcaller("set_login_policy", **policy))
    return calls
