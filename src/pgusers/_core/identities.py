"""Who is who: the rules for usernames and email addresses, and their lookup keys.

A username is stored as given, but is unique under its *key*: Unicode's
NFKC_Casefold (so case, width and compatibility forms such as fullwidth or
mathematical letters fold together), with runs of spaces collapsed as RFC 8266
does for nicknames. A new username must also differ from every other by its
*skeleton*, the Unicode TS #39 form under which confusable characters (Latin
``a`` and Cyrillic ``\u0430``) are the same. Characters that PRECIS (RFC 8264)
disallows in free-form strings are refused: controls, invisible and format
characters (zero-width space, soft hyphen, bidirectional overrides), unassigned
code points.

The Unicode data comes from maintained libraries: precis-i18n for the PRECIS
classes, ICU (through PyICU) for NFKC_Casefold and the confusables table, and
email-validator for the syntax of addresses.
"""

import re
from contextlib import suppress
from functools import cache, lru_cache
from typing import Final

import icu
import precis_i18n
from email_validator import EmailNotValidError, validate_email

from pgusers._core import checks
from pgusers._errors import BadCallError

MAX_USERNAME: Final = 150
MAX_EMAIL: Final = 254


@cache
def _freeform() -> precis_i18n.profile.Profile:
    return precis_i18n.get_profile("FreeFormClass")


@cache
def _nfkc_casefold() -> icu.Normalizer2:
    return icu.Normalizer2.getNFKCCasefoldInstance()


@cache
def _spoof_checker() -> icu.SpoofChecker:
    return icu.SpoofChecker()


def fold(text: str) -> str:
    """Return the caseless, compatibility-folded form of ``text`` (NFKC_Casefold,
    with runs of white space collapsed to one space)."""
    return " ".join(_nfkc_casefold().normalize(text).split())


def skeleton(key: str) -> str:
    """Return the Unicode TS #39 skeleton of a folded key: two keys with the same
    skeleton look alike to a person."""
    return str(_spoof_checker().getSkeleton(0, key))


def username(value: object) -> str:
    """Check a username for a new or renamed user and return it as given."""
    name = checks.text(value, "username", MAX_USERNAME)
    if name != name.strip():
        raise BadCallError("username must not start or end with white space")
    try:
        _freeform().enforce(name)
    except UnicodeEncodeError as error:
        position = error.start
        code = f"U+{ord(name[position]):04X}" if position < len(name) else "a character"
        kind = error.reason.partition("/")[2].replace("precis_", "").replace("_", " ")
        raise BadCallError(
            f"username holds {code} at position {position}, which is not allowed ({kind}): "
            "usernames may not contain control, invisible, format or unassigned characters"
        ) from None
    if not fold(name):
        raise BadCallError("username must hold something besides white space")
    return name


def username_key(value: object) -> str:
    """Return the key to look a username up by (any text that could name a user)."""
    return fold(checks.text(value, "username", MAX_USERNAME))


def _validated(address: str) -> str:
    # Syntax only: no DNS lookup, and single-label domains are accepted.
    return validate_email(
        address, check_deliverability=False, globally_deliverable=False
    ).normalized


_PLAIN_LOCAL: Final = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*")
"""A local part that is plainly valid: ASCII letters, digits and ``_%+-`` in
dot-separated runs (a strict subset of RFC 5322's dot-atom), which
email-validator leaves as it is."""
MAX_LOCAL: Final = 64


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str | None:
    """The normal form email-validator gives ``domain``, or None if it refuses it."""
    try:
        return _validated(f"postmaster@{domain}").rpartition("@")[2]
    except EmailNotValidError:
        return None


def _normalized(address: str) -> str:
    """Return the normal form of ``address`` as email-validator gives it. The domain
    of an address whose local part is plainly valid is validated once and
    remembered, which makes checking many addresses of few domains (an import)
    several times faster; any other address is validated whole."""
    local, at, domain = address.rpartition("@")
    plain = at and len(address) <= MAX_EMAIL and len(local) <= MAX_LOCAL
    if plain and _PLAIN_LOCAL.fullmatch(local):
        normal = _domain(domain)
        if normal is not None:
            return f"{local}@{normal}"
    return _validated(address)


def email(value: object) -> tuple[str, str]:
    """Check an email address (syntax only, no network); return it as given, and the key
    it is unique under: its normal form (the domain as IDNA maps it), folded like a
    username."""
    address = checks.text(value, "email", MAX_EMAIL)
    try:
        normalized = _normalized(address)
    except EmailNotValidError as error:
        # The library's message may quote characters of the value, and a caller that
        # swapped arguments would see a password there: keep only the reason.
        reason = str(error).split(":")[0].split(" (")[0].rstrip(".")
        raise BadCallError(f"email is not a valid address: {reason}") from None
    return address, fold(normalized)


def stored_email_key(address: str) -> str:
    """Return the key of an address already stored: as :func:`email` gives it, or, for
    one stored before the syntax was checked and refused now, the address folded."""
    with suppress(EmailNotValidError):
        address = _normalized(address)
    return fold(address)
