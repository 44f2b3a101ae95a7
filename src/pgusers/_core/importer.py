"""import_legacy: the users and sessions of a pgusers 0.9 database, brought over.

Everything happens in one transaction, under a lock, so an import is whole or not
at all, and a second one finds the first recorded and refuses. Users are read a
page at a time, checked and converted in Python (off the event loop under
asyncio), and staged in a temporary table; set-based statements then find
duplicates and clashes with pgusers' own users before anything is written.
Problems are refused, listing every row, unless the operator picked resolutions.
"""

import base64
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from pgusers._core import checks, identities, legacy, recording
from pgusers._core.base import Part
from pgusers._core.codec import TAG, Codec
from pgusers._core.keys import STORED_PREFIX
from pgusers._core.sql import (
    ADVISORY_LOCK,
    BEGIN,
    COMMIT,
    LOG_EVENTS,
    LOGGED,
    ROLLBACK,
    lock_id,
    render,
    render_legacy,
)
from pgusers._core.steps import Execute, Fetch, Offload, Operation
from pgusers._errors import BadCallError, LegacyImportError
from pgusers._results import ImportReport

RESOLUTIONS: Final = {
    "suffix-usernames": (
        "a duplicate, look-alike or taken username gets '-USERID' appended; an empty or "
        "invalid one becomes 'user-USERID'"
    ),
    "placeholder-emails": (
        "a missing, malformed, duplicate or taken email becomes "
        "'user-USERID@legacy.invalid' (unverified; set the real one later)"
    ),
    "unusable-passwords": (
        "a user whose password hash is missing or malformed is imported with no "
        "password that works (a reset token lets them set one)"
    ),
    "skip-users": "a user with any problem left is not imported, nor are its sessions",
}
"""What the operator may allow, by name, and what each does."""

SESSION_MODES: Final = ("keep", "end")
UNUSABLE_HASH: Final = "!no password: set one with a reset token"
"""The hash of a user imported without a usable password: no password matches it."""
PLACEHOLDER_DOMAIN: Final = "legacy.invalid"
MAX_LISTED: Final = 100_000
"""The most problems a report lists one by one (all are counted)."""
PASSES: Final = 3

_CATEGORIES: Final = (
    ("userid taken", None),
    ("look-alike username taken", "suffix-usernames"),
    ("empty username", "suffix-usernames"),
    ("invalid username", "suffix-usernames"),
    ("duplicate username", "suffix-usernames"),
    ("look-alike username", "suffix-usernames"),
    ("username taken", "suffix-usernames"),
    ("missing email", "placeholder-emails"),
    ("malformed email", "placeholder-emails"),
    ("duplicate email", "placeholder-emails"),
    ("email taken", "placeholder-emails"),
    ("missing or malformed password hash", "unusable-passwords"),
)
"""Each kind of problem, and the resolution that settles it (None: only skip-users)."""

_TAKEN_PROBLEMS: Final = {
    "userid": "userid taken",
    "username": "username taken",
    "look-alike username": "look-alike username taken",
    "email": "email taken",
}
_DUPLICATE_PROBLEMS: Final = {
    "username_key": "duplicate username",
    "skeleton": "look-alike username",
    "email_key": "duplicate email",
}


def _resolution_for(problem: str) -> str | None:
    for prefix, resolution in _CATEGORIES:
        if problem.startswith(prefix):
            return resolution
    raise AssertionError(f"a problem of no known kind: {problem}")


# -- the statements ---------------------------------------------------------------

LEGACY_COLUMNS: Final = """
    SELECT table_name::text, array_agg(column_name::text ORDER BY ordinal_position)
    FROM information_schema.columns
    WHERE table_schema = %(from_schema)s AND table_name IN ('users', 'sessions')
    GROUP BY table_name
"""

PREVIOUS_IMPORT: Final = """
    SELECT extract(epoch FROM at)::float8, users, sessions FROM {schema}.legacy_imports
    WHERE from_schema = %(from_schema)s
"""

STAGE: Final = """
    CREATE TEMPORARY TABLE pgusers_legacy_stage (
        userid        bigint PRIMARY KEY,
        username      text,
        username_key  text COLLATE "C",
        skeleton      text COLLATE "C",
        email         text,
        email_key     text COLLATE "C",
        password_hash text,
        admin         boolean NOT NULL,
        extra_data    jsonb,
        own_problems  jsonb NOT NULL,
        problems      jsonb NOT NULL,
        skipped       boolean NOT NULL DEFAULT false
    ) ON COMMIT DROP
"""

LEGACY_USERS_PAGE: Final = """
    SELECT userid, username, email, salt, kpasswd, admin, extra_data
    FROM {legacy}.users WHERE userid > %s ORDER BY userid LIMIT %s
"""

STAGE_USERS: Final = """
    INSERT INTO pgusers_legacy_stage (
        userid, username, username_key, skeleton, email, email_key, password_hash, admin,
        extra_data, own_problems, problems
    )
    SELECT v.*, v.own_problems FROM unnest(
        %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
        %s::boolean[], %s::jsonb[], %s::jsonb[]
    ) AS v(userid, username, username_key, skeleton, email, email_key, password_hash, admin,
           extra_data, own_problems)
"""

RESET_PROBLEMS: Final = """
    UPDATE pgusers_legacy_stage SET problems = own_problems
    WHERE NOT skipped AND problems <> own_problems
"""

# All but the lowest userid of each group sharing a value are marked.
MARK_DUPLICATES: Final = """
    UPDATE pgusers_legacy_stage s
    SET problems = s.problems || to_jsonb(%(problem)s || ' (as userid ' || d.first || ')')
    FROM (
        SELECT userid, min(userid) OVER (PARTITION BY {column}) AS first
        FROM pgusers_legacy_stage WHERE {column} IS NOT NULL AND NOT skipped
    ) d
    WHERE d.userid = s.userid AND d.userid <> d.first
"""

DUPLICATE_COLUMNS: Final = {
    "username_key": "username_key",
    "skeleton": "skeleton",
    "email_key": "email_key",
}

MARK_TAKEN: Final = """
    UPDATE pgusers_legacy_stage s
    SET problems = s.problems || to_jsonb(%(problem)s || ' (by userid ' || u.userid || ')')
    FROM {schema}.users u
    WHERE {match} AND NOT s.skipped
"""

TAKEN_MATCHES: Final = {
    "userid": "u.userid = s.userid",
    "username": "u.username_key = s.username_key",
    "look-alike username": "u.username_skeleton = s.skeleton AND u.username_key <> s.username_key",
    "email": "u.email_key = s.email_key",
}

PROBLEM_PAGE: Final = """
    SELECT userid, username, email, password_hash IS NULL, problems FROM pgusers_legacy_stage
    WHERE userid > %s AND NOT skipped AND jsonb_array_length(problems) > 0
    ORDER BY userid LIMIT %s
"""

RESOLVE: Final = """
    UPDATE pgusers_legacy_stage s SET
        username = coalesce(v.username, s.username),
        username_key = coalesce(v.username_key, s.username_key),
        skeleton = coalesce(v.skeleton, s.skeleton),
        email = coalesce(v.email, s.email),
        email_key = coalesce(v.email_key, s.email_key),
        password_hash = coalesce(v.password_hash, s.password_hash),
        own_problems = v.own_problems, skipped = v.skipped
    FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                %s::text[], %s::jsonb[], %s::boolean[])
        AS v(userid, username, username_key, skeleton, email, email_key, password_hash,
             own_problems, skipped)
    WHERE s.userid = v.userid
"""

COPY_USERS: Final = """
    INSERT INTO {schema}.users (
        userid, username, username_key, username_skeleton, email, email_key, password_hash,
        admin, extra_data, email_verified, created_at
    )
    OVERRIDING SYSTEM VALUE
    SELECT userid, username, username_key, skeleton, email, email_key, password_hash, admin,
           extra_data, false, to_timestamp(%(now)s)
    FROM pgusers_legacy_stage WHERE NOT skipped
"""

# The next userid follows the largest of pgusers' own, the legacy table's and what
# the legacy sequence handed out, so the ids of deleted legacy users never return.
MOVE_USERIDS: Final = """
    SELECT setval(pg_get_serial_sequence(%(users)s, 'userid'), greatest(
        (SELECT max(userid) FROM {schema}.users),
        (SELECT max(userid) FROM {legacy}.users),
        (SELECT pg_sequence_last_value(pg_get_serial_sequence(%(legacy_users)s, 'userid'))),
        1))
"""

COUNT_LEGACY_SESSIONS: Final = """
    SELECT count(*),
           count(*) FILTER (WHERE s.userid IS NULL),
           count(*) FILTER (WHERE s.skipped),
           count(*) FILTER (WHERE NOT s.skipped AND NOT {key_shape}),
           count(*) FILTER (WHERE NOT s.skipped AND {key_shape}
                            AND NOT coalesce(l.expiration::float8 > %(now)s, false))
    FROM {legacy}.sessions l LEFT JOIN pgusers_legacy_stage s ON s.userid = l.userid
"""

LEGACY_KEY_SHAPE: Final = "(length(l.key) = 32 AND l.key ~ '^[0-9a-f]+$')"
"""A key as pgusers 0.9 made it: 32 lower-case hex characters."""

LIVE_SESSIONS: Final = """
    CREATE TEMPORARY TABLE pgusers_legacy_live ON COMMIT DROP AS
    SELECT DISTINCT ON (l.key) l.key, l.userid, l.expiration::float8 AS expiration,
           l.extra_data,
           l.extra_data IS NULL OR l.extra_data IN (
               '\\x4e2e'::bytea, '\\x80024e2e', '\\x80034e2e', '\\x80044e2e', '\\x80054e2e'
           ) AS plain
    FROM {legacy}.sessions l
    JOIN pgusers_legacy_stage s ON s.userid = l.userid AND NOT s.skipped
    WHERE {key_shape} AND l.expiration::float8 > %(now)s
    ORDER BY l.key, l.expiration DESC
"""
"""The live sessions of imported users (of two rows with the same key, which 0.9 did
not prevent, the later-expiring one); ``plain``: no data, or None pickled (by any
protocol), so Python need not read it."""

OPEN_LIVE_SESSIONS: Final = """
    DECLARE pgusers_legacy_sessions NO SCROLL CURSOR FOR
    SELECT key, userid, expiration, extra_data FROM pgusers_legacy_live WHERE NOT plain
"""

# Imported sessions, from {rows}: their key stored as the userspace keeps keys, and
# their 0.9 expiry as the end they never slide past.
COPY_SESSIONS: Final = """
    INSERT INTO {schema}.sessions (
        key, userid, created_at, expires_at, ends_at, extra_data, generation, legacy
    )
    SELECT CASE WHEN t.key_storage = 'hashed'
                THEN %(prefix)s || encode(sha256(convert_to(v.key, 'UTF8')), 'hex')
                ELSE v.key END,
           v.userid, to_timestamp(%(now)s), to_timestamp(v.expiration),
           to_timestamp(v.expiration), v.extra_data, u.generation + t.generation, true
    FROM {rows}
    JOIN {schema}.users u ON u.userid = v.userid
    CROSS JOIN {settings} t
"""

PLAIN_LIVE_SESSIONS: Final = """(
    SELECT key, userid, expiration, NULL::jsonb AS extra_data
    FROM pgusers_legacy_live WHERE plain) AS v"""
"""COPY_SESSIONS' {rows}: the live sessions without data, copied in one statement."""

CONVERTED_SESSIONS: Final = """unnest(%(keys)s::text[], %(userids)s::bigint[],
    %(expirations)s::float8[], %(extra)s::jsonb[]) AS v(key, userid, expiration, extra_data)"""
"""COPY_SESSIONS' {rows}: a page of sessions whose data Python converted."""

NEXT_LEGACY_SESSIONS: Final = "FETCH 5000 FROM pgusers_legacy_sessions"
"""The next IMPORT_BATCH sessions (FETCH takes no parameter)."""

RECORD_IMPORT: Final = """
    WITH recorded AS (
        INSERT INTO {schema}.legacy_imports (from_schema, at, users, sessions, report)
        VALUES (%(from_schema)s, to_timestamp(%(now)s), %(users)s, %(sessions)s, %(report)s)
        RETURNING 1
    ), happened AS (
        SELECT 'legacy.imported' AS kind, NULL::bigint AS userid, NULL::text AS session_id,
               %(summary)s::jsonb AS detail
        FROM recorded
        UNION ALL
        SELECT 'legacy.resolved', r.userid, NULL, r.detail
        FROM unnest(%(resolved_userids)s::bigint[], %(resolved_details)s::jsonb[])
            AS r(userid, detail)
    ), {log}
    SELECT {logged}
"""

IMPORT_BATCH: Final = 5000


@dataclass
class _Staged:
    """One page of legacy users, as the staging table's columns."""

    columns: tuple[list[Any], ...]
    opaque: list[int]


@dataclass
class _Tally:
    users_read: int = 0
    problems: list[tuple[int, str | None, str]] = field(default_factory=list)
    problem_count: Counter[str] = field(default_factory=Counter)
    resolutions: list[tuple[int, str, str]] = field(default_factory=list)
    unresolved: int = 0
    opaque_users: list[int] = field(default_factory=list)
    opaque_sessions: int = 0
    skipped_users: int = 0


class Importer:
    """One import_legacy call: its checked arguments, and the operation that runs it."""

    def __init__(
        self,
        schema: str,
        from_schema: str,
        *,
        dry_run: bool,
        sessions: str,
        resolutions: frozenset[str],
        progress: Callable[[str, int], object] | None,
        audit: dict[str, Any],
    ) -> None:
        self.schema = schema
        self.from_schema = from_schema
        self.dry_run = dry_run
        self.sessions = sessions
        self.resolutions = resolutions
        self.progress = progress
        self.audit = audit
        self.codec = Codec("json")
        self.tally = _Tally()

    def _sql(self, template: str, **fragments: str) -> str:
        return render_legacy(template, self.schema, self.from_schema, **fragments)

    def _say(self, stage: str, count: int) -> None:
        if self.progress is not None:
            self.progress(stage, count)

    # -- the operation ----------------------------------------------------------------

    def run(self) -> Operation[ImportReport]:
        started = time.perf_counter()
        now = self.audit["now"]
        tables = dict((yield Execute(LEGACY_COLUMNS, {"from_schema": self.from_schema}, Fetch.ALL)))
        self._check_tables(tables)
        yield Execute(BEGIN, fetch=Fetch.ROWCOUNT)
        yield Execute(ADVISORY_LOCK, (lock_id("import", self.schema),))
        previous = yield Execute(self._sql(PREVIOUS_IMPORT), {"from_schema": self.from_schema})
        if previous is not None:
            at, users, sessions = previous
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
            raise BadCallError(
                f"the users of schema {self.from_schema!r} were imported already, at {when} "
                f"({users} users, {sessions} sessions); importing again could bring back "
                "what was deleted or ended since, so nothing was done"
            )
        yield Execute(STAGE, fetch=Fetch.ROWCOUNT)
        yield from self._stage_users()
        yield from self._settle_problems()
        users = yield Execute(self._sql(COPY_USERS), {"now": now}, Fetch.ROWCOUNT)
        self._say("users imported", users)
        yield Execute(
            self._sql(MOVE_USERIDS),
            {
                "users": _qualified(self.schema, "users"),
                "legacy_users": _qualified(self.from_schema, "users"),
            },
        )
        sessions, sessions_skipped = yield from self._sessions("sessions" in tables, now)
        report = ImportReport(
            from_schema=self.from_schema,
            dry_run=self.dry_run,
            users=users,
            sessions=sessions,
            users_skipped=self.tally.skipped_users,
            sessions_skipped=sessions_skipped,
            problems=tuple(self.tally.problems),
            problem_counts=dict(self.tally.problem_count),
            resolutions=tuple(self.tally.resolutions),
            opaque_extra_data=tuple(self.tally.opaque_users),
            opaque_session_data=self.tally.opaque_sessions,
            seconds=0.0,
        )
        events = yield from self._record(report, now)
        yield Execute(ROLLBACK if self.dry_run else COMMIT, fetch=Fetch.ROWCOUNT)
        if not self.dry_run:
            recording.emit(events)
        return report._replace(seconds=time.perf_counter() - started)

    def _check_tables(self, tables: dict[str, list[str]]) -> None:
        wanted = {"userid", "username", "email", "salt", "kpasswd", "admin", "extra_data"}
        if "users" not in tables:
            raise BadCallError(
                f"schema {self.from_schema!r} has no table 'users' of pgusers 0.9 in this database"
            )
        missing = wanted - set(tables["users"])
        if missing:
            raise BadCallError(
                f"{self.from_schema}.users is not pgusers 0.9's table: it lacks "
                f"{', '.join(sorted(missing))}"
            )
        if "sessions" in tables:
            missing = {"userid", "key", "expiration", "extra_data"} - set(tables["sessions"])
            if missing:
                raise BadCallError(
                    f"{self.from_schema}.sessions is not pgusers 0.9's table: it lacks "
                    f"{', '.join(sorted(missing))}"
                )

    # -- users ---------------------------------------------------------------------------

    def _stage_users(self) -> Operation[None]:
        """Read, check and stage the legacy users a page at a time. Checking a page
        (Unicode and email rules, in Python) runs between the statements: overlapping
        it with the server's reading, on a thread, made a 100,000-user import no
        faster (7.6 to 8.0 s with the thread, 6.9 to 7.6 s without)."""
        page = self._sql(LEGACY_USERS_PAGE)
        last = 0
        while True:
            rows = yield Execute(page, (last, IMPORT_BATCH), Fetch.ALL)
            if not rows:
                return
            staged = self._stage_page(rows)
            yield Execute(STAGE_USERS, staged.columns, Fetch.ROWCOUNT)
            self.tally.opaque_users += staged.opaque
            self.tally.users_read += len(staged.columns[0])
            self._say("users read", self.tally.users_read)
            last = rows[-1][0]

    def _stage_page(self, rows: list[tuple[Any, ...]]) -> _Staged:
        columns: tuple[list[Any], ...] = tuple([] for _ in range(10))
        opaque = []
        for userid, username, email, salt, kpasswd, admin, extra_data in rows:
            problems: list[str] = []
            name, name_key, skeleton = _name(username, problems)
            address, address_key = _address(email, problems)
            password_hash = legacy.stored_hash(salt, kpasswd)
            if password_hash is None:
                problems.append("missing or malformed password hash")
            data, kept_opaque = self._extra(extra_data)
            if kept_opaque:
                opaque.append(userid)
            values = (
                userid,
                name,
                name_key,
                skeleton,
                address,
                address_key,
                password_hash,
                bool(admin),
                data,
                json.dumps(problems),
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        return _Staged(columns, opaque)

    def _extra(self, data: bytes | None) -> tuple[str | None, bool]:
        """Return a legacy pickle as tagged JSON text, and whether it was kept opaque."""
        if data is None:
            return None, False
        raw = bytes(data)
        try:
            value = legacy.unpickle(raw)
            return self.codec.dumps(value), False
        except (legacy.RefusedPickleError, BadCallError):
            return json.dumps({TAG: "pickle", "base64": base64.b64encode(raw).decode()}), True

    def _settle_problems(self) -> Operation[None]:
        for number in range(1, PASSES + 1):
            yield from self._mark_problems()
            found = yield from self._problem_rows()
            if not found:
                return
            first = number == 1
            for userid, username, _, _, problems in found:
                for problem in problems:
                    self.tally.problem_count[problem.split(" (")[0].split(":")[0]] += 1
                    if first and len(self.tally.problems) < MAX_LISTED:
                        self.tally.problems.append((userid, username, problem))
            changes = [self._resolve(row) for row in found]
            if self.tally.unresolved:
                raise LegacyImportError(self._refusal(), self._partial_report())
            for start in range(0, len(changes), IMPORT_BATCH):
                batch = changes[start : start + IMPORT_BATCH]
                columns = [list(column) for column in zip(*batch, strict=True)]
                yield Execute(RESOLVE, columns, Fetch.ROWCOUNT)
        raise LegacyImportError(
            f"resolving the problems found still left users in conflict after {PASSES} "
            "passes; nothing was imported",
            self._partial_report(),
        )

    def _mark_problems(self) -> Operation[None]:
        yield Execute(RESET_PROBLEMS, fetch=Fetch.ROWCOUNT)
        for column, problem in _DUPLICATE_PROBLEMS.items():
            yield Execute(
                render(MARK_DUPLICATES, self.schema, column=DUPLICATE_COLUMNS[column]),
                {"problem": problem},
                Fetch.ROWCOUNT,
            )
        for what, problem in _TAKEN_PROBLEMS.items():
            yield Execute(
                render(MARK_TAKEN, self.schema, match=TAKEN_MATCHES[what]),
                {"problem": problem},
                Fetch.ROWCOUNT,
            )

    def _problem_rows(self) -> Operation[list[tuple[Any, ...]]]:
        found: list[tuple[Any, ...]] = []
        last = 0
        while True:
            rows = yield Execute(PROBLEM_PAGE, (last, IMPORT_BATCH), Fetch.ALL)
            if not rows:
                return found
            found += rows
            last = rows[-1][0]

    def _resolve(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """Return the staging row's new values (RESOLVE's columns) under the chosen
        resolutions, counting what cannot be resolved."""
        userid, username, email, _, problems = row
        needed = {_resolution_for(problem) for problem in problems}
        if not needed <= self.resolutions:
            if "skip-users" not in self.resolutions:
                self.tally.unresolved += 1
            else:
                self.tally.skipped_users += 1
                self.tally.resolutions.append((userid, "; ".join(problems), "not imported"))
            return (userid, None, None, None, None, None, None, "[]", True)
        name, email_text = username, email
        name_key = skeleton = email_key = None
        password_hash: str | None = None
        done = []
        if "suffix-usernames" in needed:
            name = _renamed(userid, username, problems)
            done.append(f"username {username!r} -> {name!r}")
        if name is not None:
            name_key = identities.fold(name)
            skeleton = identities.skeleton(name_key)
        if "placeholder-emails" in needed:
            email_text = f"user-{userid}@{PLACEHOLDER_DOMAIN}"
            done.append(f"email {email!r} -> {email_text!r}")
        if email_text is not None:
            email_key = identities.stored_email_key(email_text)
        if "unusable-passwords" in needed:
            password_hash = UNUSABLE_HASH
            done.append("no usable password")
        self.tally.resolutions.append((userid, "; ".join(problems), "; ".join(done)))
        return (userid, name, name_key, skeleton, email_text, email_key, password_hash, "[]", False)

    def _refusal(self) -> str:
        counts = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.tally.problem_count.items()))
        return (
            f"{self.tally.unresolved} legacy users break pgusers' rules ({counts}); nothing "
            "was imported. The report lists each; allow a resolution "
            f"({', '.join(RESOLUTIONS)}) to import them"
        )

    def _partial_report(self) -> ImportReport:
        return ImportReport(
            from_schema=self.from_schema,
            dry_run=self.dry_run,
            users=0,
            sessions=0,
            users_skipped=0,
            sessions_skipped={},
            problems=tuple(self.tally.problems),
            problem_counts=dict(self.tally.problem_count),
            resolutions=(),
            opaque_extra_data=tuple(self.tally.opaque_users),
            opaque_session_data=0,
            seconds=0.0,
        )

    # -- sessions ------------------------------------------------------------------------

    def _sessions(self, present: bool, now: float) -> Operation[tuple[int, dict[str, int]]]:
        if not present:
            return 0, {}
        shape = {"key_shape": LEGACY_KEY_SHAPE}
        counts = yield Execute(self._sql(COUNT_LEGACY_SESSIONS, **shape), {"now": now})
        total, orphans, of_skipped, malformed, expired = counts
        skipped = {
            "orphan (no such user)": orphans,
            "user not imported": of_skipped,
            "malformed key": malformed,
            "expired": expired,
        }
        live = total - orphans - of_skipped - malformed - expired
        if self.sessions == "end":
            skipped["ended (sessions='end')"] = live
            return 0, {reason: n for reason, n in skipped.items() if n}
        yield Execute(self._sql(LIVE_SESSIONS, **shape), {"now": now}, Fetch.ROWCOUNT)
        # Sessions without data (most) go over in one statement; the others pass
        # through Python, which reads their pickles.
        imported = yield Execute(
            self._sql(COPY_SESSIONS, rows=PLAIN_LIVE_SESSIONS),
            {"now": now, "prefix": STORED_PREFIX},
            Fetch.ROWCOUNT,
        )
        self._say("sessions imported", imported)
        yield Execute(OPEN_LIVE_SESSIONS, fetch=Fetch.ROWCOUNT)
        insert = self._sql(COPY_SESSIONS, rows=CONVERTED_SESSIONS)
        while True:
            rows = yield Execute(NEXT_LEGACY_SESSIONS, fetch=Fetch.ALL)
            if not rows:
                break
            params = yield Offload(self._session_page, (rows, now), in_transaction=True)
            imported += yield Execute(insert, params, Fetch.ROWCOUNT)
            self._say("sessions imported", imported)
        duplicates = live - imported
        if duplicates:
            skipped["duplicate key (the later expiry kept)"] = duplicates
        return imported, {reason: n for reason, n in skipped.items() if n}

    def _session_page(self, rows: list[tuple[Any, ...]], now: float) -> dict[str, Any]:
        extra = []
        for *_, data in rows:
            text, opaque = self._extra(data)
            extra.append(text)
            self.tally.opaque_sessions += opaque
        return {
            "keys": [row[0] for row in rows],
            "userids": [row[1] for row in rows],
            "expirations": [row[2] for row in rows],
            "extra": extra,
            "prefix": STORED_PREFIX,
            "now": now,
        }

    # -- the record ----------------------------------------------------------------------

    def _record(self, report: ImportReport, now: float) -> Operation[list[dict[str, Any]]]:
        summary = {
            "from_schema": self.from_schema,
            "users": report.users,
            "sessions": report.sessions,
            "users_skipped": report.users_skipped,
            "sessions_skipped": report.sessions_skipped,
            "problems": report.problem_counts,
            "resolutions": sorted(self.resolutions),
            "opaque_extra_data": len(report.opaque_extra_data) + report.opaque_session_data,
        }
        resolved = report.resolutions
        params = {
            "from_schema": self.from_schema,
            "now": now,
            "users": report.users,
            "sessions": report.sessions,
            "report": json.dumps(summary),
            "summary": json.dumps(summary),
            "resolved_userids": [userid for userid, _, _ in resolved],
            "resolved_details": [
                json.dumps({"problems": problems, "resolution": done})
                for _, problems, done in resolved
            ],
            **self.audit,
        }
        query = render(RECORD_IMPORT, self.schema, log=LOG_EVENTS, logged=LOGGED)
        (events,) = yield Execute(query, params)
        return list(events or ())


def _qualified(schema: str, table: str) -> str:
    from psycopg import sql  # noqa: PLC0415 - the quoting pgusers uses everywhere

    return sql.Identifier(schema, table).as_string()


def _name(username: str | None, problems: list[str]) -> tuple[str | None, str | None, str | None]:
    if username is None or not username.strip():
        problems.append("empty username")
        return username, None, None
    try:
        name = identities.username(username)
    except BadCallError as error:
        problems.append(f"invalid username: {error}")
        return username, None, None
    key = identities.fold(name)
    return name, key, identities.skeleton(key)


def _address(email: str | None, problems: list[str]) -> tuple[str | None, str | None]:
    if email is None or not email.strip():
        problems.append("missing email")
        return email, None
    try:
        return identities.email(email)
    except BadCallError as error:
        problems.append(f"malformed email: {error}")
        return email, None


def _renamed(userid: int, username: str | None, problems: Iterable[str]) -> str:
    """The username a user gets under suffix-usernames."""
    if username is not None and not any(
        problem.startswith(("empty username", "invalid username")) for problem in problems
    ):
        candidate = f"{username}-{userid}"
        try:
            return identities.username(candidate)
        except BadCallError:
            pass
    return f"user-{userid}"


class LegacyPart(Part):
    """The operation that imports pgusers 0.9's tables."""

    def import_legacy(
        self,
        from_schema: object,
        dry_run: object,
        sessions: object,
        on_conflict: object,
        progress: object,
    ) -> Operation[ImportReport]:
        source = checks.text(from_schema, "from_schema", 63)
        if len(source.encode()) > 63:
            raise BadCallError("from_schema is longer than PostgreSQL's 63-byte names")
        if source == self.schema:
            raise BadCallError(
                f"from_schema {source!r} is pgusers' own schema; name the schema of the "
                "pgusers 0.9 tables (usually 'public')"
            )
        if not isinstance(sessions, str) or sessions not in SESSION_MODES:
            raise BadCallError(f"sessions must be {' or '.join(map(repr, SESSION_MODES))}")
        allowed = checks.names(on_conflict, "on_conflict", RESOLUTIONS)
        if progress is not None and not callable(progress):
            raise BadCallError("progress must be a callable taking a stage and a count")
        importer = Importer(
            self.schema,
            source,
            dry_run=checks.flag(dry_run, "dry_run"),
            sessions=sessions,
            resolutions=frozenset(allowed),
            progress=progress,
            audit=recording.parameters(time.time()),
        )
        return importer.run()
