"""How the commands read what the operator gives: USER, passwords, times, JSON, settings."""

import datetime as dt
import json
import re
import sys
import time
from typing import Any, Final

import click

from pgusers._errors import BadCallError
from pgusers._results import FoundUser
from pgusers._settings import SETTINGS, read
from pgusers._userspace import UserSpace
from pgusers.cli._group import F, NegativeAnswerError

DASH_ARGUMENT: Final = {"ignore_unknown_options": True}
"""For commands whose argument is a key or an id: random URL-safe text may begin with
"-", and taken for an unknown option it would be refused."""


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(command)


def password_stdin_option(command: F) -> F:
    return click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from the first line of standard input.",
    )(command)


def read_password(
    from_stdin: bool,
    prompt: str = "Password",
    *,
    confirm: bool = True,
    what: str = "password",
    option: str = "--password-stdin",
) -> str:
    """Read a password (or another secret, ``what``) from standard input, or ask on a
    terminal (twice to set one)."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise BadCallError(f"no {what} on standard input")
        return line
    if not sys.stdin.isatty():
        raise BadCallError(f"no terminal to ask for the {what} on; use {option}")
    return str(click.prompt(prompt, hide_input=True, confirmation_prompt=confirm))


USERID_TEXT = re.compile(r"[0-9]{1,19}")
"""What a userid looks like on the command line: ASCII digits only (not a superscript
or Arabic-Indic digit), and few enough to be a 64-bit number."""


SELECTORS = {"id": "userid", "name": "username", "email": "email"}
SELECTOR_HELP = {
    "id": "USER is a userid.",
    "name": "USER is a username.",
    "email": "USER is an email address.",
}


def user_selector(command: F) -> F:
    """Add ``--id``, ``--name`` and ``--email``, which say what USER is."""
    for flag in reversed(SELECTORS):
        command = click.option(
            f"--{flag}",
            "by",
            flag_value=flag,
            help=SELECTOR_HELP[flag],
        )(command)
    return command


def _candidates(usp: UserSpace, user: str, by: str | None) -> dict[int, tuple[str, FoundUser]]:
    """Return the users ``user`` names, by userid, each with the field it matched."""
    found: dict[int, tuple[str, FoundUser]] = {}
    for flag, field_name in SELECTORS.items():
        if by not in (None, flag):
            continue
        if flag == "id":
            if not USERID_TEXT.fullmatch(user):
                if by == flag:
                    raise BadCallError(f"{user!r} is not a userid")
                continue
            lookup: dict[str, Any] = {"userid": int(user)}
        elif flag == "email" and by is None and "@" not in user:
            continue
        else:
            lookup = {field_name: user}
        try:
            match = usp.find_user(**lookup)
        except BadCallError:
            if by == flag:
                raise
            continue  # not a valid value of that field, so no user has it
        if match is not None:
            found.setdefault(match["userid"], (field_name, match))
    return found


def find(usp: UserSpace, user: str, by: str | None = None) -> FoundUser:
    """Find the user that ``user`` names: by the field ``by`` (``id``, ``name`` or
    ``email``), or by any of them when it names one user only."""
    found = _candidates(usp, user, by)
    if not found:
        raise NegativeAnswerError(f"no user {user!r}")
    if len(found) > 1:
        names = "; ".join(
            f"userid {userid} (username {match['username']!r}) by its {field_name}"
            for userid, (field_name, match) in sorted(found.items())
        )
        raise BadCallError(
            f"{user!r} names more than one user: {names}; say which with --id, --name or --email"
        )
    return next(iter(found.values()))[1]


SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SINCE_AGO = re.compile(r"([0-9]{1,9})([smhdw])")


def moment(text: str, option: str) -> float:
    """Read a time given on the command line: an ISO 8601 date or time (UTC unless it
    says otherwise), or a duration ago such as ``30m``, ``12h`` or ``7d``."""
    ago = SINCE_AGO.fullmatch(text)
    if ago:
        return time.time() - int(ago[1]) * SINCE_UNITS[ago[2]]
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadCallError(
            f"{option} {text!r} is neither an ISO 8601 time (2026-11-30, "
            "2026-11-30T08:00) nor a duration ago (30m, 12h, 7d, 2w)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def json_value(text: str | None, option: str) -> Any:
    """The value of an option that takes JSON (None when it was not given)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadCallError(f'{option} takes JSON, such as \'{{"plan": "pro"}}\'') from None


extra_data_option = click.option(
    "--extra-data", metavar="JSON", help='The user\'s extra_data, as JSON: \'{"plan": "pro"}\'.'
)


def session_owner(usp: UserSpace, user: str | None, by: str | None, every: bool) -> int:
    if every == (user is not None):
        raise BadCallError("name a USER or give --all")
    return 0 if user is None else int(find(usp, user, by)["userid"])


def read_setting(name: str, text: str | None) -> Any:
    """A setting's value from the command line: a number, or "none" where the setting
    may have no value (no limit)."""
    if text is None:
        raise click.UsageError(f'give a number of {SETTINGS[name].unit}, or "none"')
    return read(name, text)
