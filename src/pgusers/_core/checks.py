"""Validation of the values callers pass in, before anything reaches the database."""

import re
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from itertools import islice
from typing import Any, Final

from pgusers._errors import BadCallError

MAX_PASSWORD: Final = 1024
MAX_USERID: Final = 2**63 - 1
MAX_TTL: Final = 100 * 365 * 86400.0


def text(value: object, what: str, max_length: int) -> str:
    """Return ``value`` if it is a non-empty, storable string of at most ``max_length``."""
    if not isinstance(value, str):
        raise BadCallError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise BadCallError(f"{what} must not be empty")
    if len(value) > max_length:
        raise BadCallError(f"{what} is {len(value)} characters long; the limit is {max_length}")
    return storable(value, what)


CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""Control characters (Unicode's Cc): a line break or an escape sequence in a value
that is logged would let it forge log lines or rewrite a terminal."""


def label(value: object, what: str, max_length: int) -> str:
    """:func:`text` that also refuses control characters: for values that end up in
    logs and listings (an actor, a source, a user agent)."""
    checked = text(value, what, max_length)
    if CONTROLS.search(checked):
        raise BadCallError(f"{what} must not contain control characters (line breaks, escapes)")
    return checked


MAX_SOURCE: Final = 255


def source(value: object) -> str | None:
    """A caller's source (such as its address), as events and the login throttle
    record it, or None: :func:`label`, at most MAX_SOURCE characters."""
    return None if value is None else label(value, "source", MAX_SOURCE)


def printable(value: object) -> str:
    """``value`` as text with its control characters escaped, for a log line."""
    return CONTROLS.sub(lambda match: f"\\x{ord(match.group()):02x}", str(value))


def storable(value: str, what: str) -> str:
    """Return ``value`` if PostgreSQL and libpq can take it: no NUL (libpq would cut the
    text there) and no lone surrogate (it has no UTF-8 form)."""
    if "\x00" in value:
        raise BadCallError(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadCallError(
            f"{what} is not valid Unicode (it holds a lone surrogate, or bytes that are not UTF-8)"
        ) from None
    return value


def password(value: object, what: str = "password") -> str:
    """Check a cleartext password; the message never repeats the password."""
    return text(value, what, MAX_PASSWORD)


def userid(value: object, *, allow_all: bool = False) -> int:
    """Check a userid: a positive int (or 0 meaning "every user" where ``allow_all``)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadCallError(f"userid must be an int, not {type(value).__name__}")
    lowest = 0 if allow_all else 1
    if not lowest <= value <= MAX_USERID:
        wanted = "0 (every user) or a positive int" if allow_all else "a positive int"
        # str() of an int of thousands of digits raises; such a value is named, not shown.
        shown = str(value) if value.bit_length() <= 64 else "an int beyond 64 bits"
        raise BadCallError(f"userid must be {wanted}, not {shown}")
    return value


def flag(value: object, what: str) -> bool:
    """Check a bool argument (ints such as 1 are refused to catch swapped arguments)."""
    if not isinstance(value, bool):
        raise BadCallError(f"{what} must be a bool, not {type(value).__name__}")
    return value


def seconds(value: object, what: str, maximum: float, unit: str = "seconds") -> float:
    """Check a duration: a number of ``unit``, more than 0 and at most ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadCallError(f"{what} must be a number of {unit}, not {type(value).__name__}")
    # Compared before the conversion, so an int too large for a float is refused, and
    # nan, failing both comparisons, too.
    if not 0 < value <= maximum:
        raise BadCallError(f"{what} must be more than 0 and at most {maximum:.0f} {unit}")
    return float(value)


def optional_seconds(
    value: object, what: str, maximum: float, unit: str = "seconds"
) -> float | None:
    """Check a duration that may be None (meaning none)."""
    return None if value is None else seconds(value, what, maximum, unit)


MAX_MOMENT: Final = 253402300799.0
"""The last second of the year 9999, the latest time a moment may name."""


def moment(value: object, what: str) -> float:
    """Check a point in time: a Unix time in seconds, or a timezone-aware datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise BadCallError(f"{what} must be a timezone-aware datetime (or a Unix time)")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadCallError(f"{what} must be a Unix time or a datetime, not {type(value).__name__}")
    if not 0 <= value <= MAX_MOMENT:
        raise BadCallError(f"{what} must be a Unix time from 0 to {MAX_MOMENT:.0f}")
    return float(value)


def ttl(value: object) -> float:
    """Check a session time to live in seconds."""
    return seconds(value, "TTL", MAX_TTL)


def session_key(value: object) -> str:
    """Check the type of a session key; any str is accepted (one that cannot be a key
    is simply not found), so a forged cookie never raises."""
    if not isinstance(value, str):
        raise BadCallError(f"key must be a str, not {type(value).__name__}")
    return value


MAX_POLICY_SECONDS: Final = 86400.0
"""The longest a throttling duration may be: login_failures rows live a day."""


def count(value: object, what: str, lowest: int, highest: int) -> int:
    """Check a whole number from ``lowest`` to ``highest``."""
    if type(value) is not int or not lowest <= value <= highest:
        raise BadCallError(f"{what} must be an int from {lowest} to {highest}")
    return value


def optional_count(value: object, what: str, lowest: int) -> int | None:
    """Check an optional whole number of at least ``lowest`` (None: leave as it is)."""
    return None if value is None else count(value, what, lowest, 1_000_000)


def optional_duration(value: object, what: str) -> float | None:
    """Check an optional number of seconds, more than 0 and at most a day."""
    return None if value is None else seconds(value, what, MAX_POLICY_SECONDS)


def names(value: object, what: str, known: Collection[str]) -> list[str]:
    """Check a choice of names from ``known``: one name, or a list, tuple or set of
    them; return them sorted. An unknown one is refused, naming every known one."""
    wanted = [value] if isinstance(value, str) else value
    if not isinstance(wanted, list | tuple | set | frozenset):
        raise BadCallError(f"{what} must be a name or a list of names, not {type(value).__name__}")
    unknown = sorted(
        repr(name) for name in wanted if not isinstance(name, str) or name not in known
    )
    if unknown:
        raise BadCallError(
            f"{what}: unknown {', '.join(unknown)}; the choices are {', '.join(sorted(known))}"
        )
    return sorted(wanted)


def strings(value: object, what: str, most: int, longest: int = 200) -> list[str]:
    """Check a collection of at most ``most`` non-empty strings, each without control
    characters (a single string is refused, so that "abc" is never read as "a", "b",
    "c"; an endless iterator is read no further than one past the limit)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise BadCallError(f"{what} must be a list of strings, not {type(value).__name__}")
    items = list(islice(value, most + 1))
    if len(items) > most:
        raise BadCallError(f"{what} has more than {most} items")
    return [label(item, what, longest) for item in items]


def org(value: object) -> dict[str, Any]:
    """The parameters that name an organization: its id (``org_id``) or its slug
    (``org_slug``), and ``org_given``, false for None (everywhere)."""
    if value is None:
        return {"org_id": None, "org_slug": None, "org_given": False}
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_USERID:
            raise BadCallError("org must be a positive id (or a slug)")
        return {"org_id": value, "org_slug": None, "org_given": True}
    if isinstance(value, str):
        return {"org_id": None, "org_slug": text(value, "org", 63), "org_given": True}
    raise BadCallError(f"org must be an organization's id or slug, not {type(value).__name__}")
