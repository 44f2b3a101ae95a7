"""The exceptions pgusers raises."""

from pgusers._results import ImportReport


class PgUsersError(Exception):
    """Base class of every exception pgusers raises on purpose."""


class BadCallError(PgUsersError, ValueError):
    """A method was called with arguments it cannot accept.

    Nothing was written: the database is as it was before the call.
    """


class DatabaseUnavailableError(PgUsersError, ConnectionError):
    """The PostgreSQL server could not be reached, or the connection to it was lost.

    Calls that only read, or whose repetition is harmless, are retried once on a
    fresh connection before this is raised.
    """


class DatabaseError(PgUsersError):
    """The database refused a statement for a reason of its own: a statement timeout,
    a permission it lacks, a serialization failure that outlived the retries, a
    constraint added by hand... ``sqlstate`` is PostgreSQL's code for it (such as
    ``57014``), and the original psycopg exception is chained as ``__cause__``.
    Nothing of the call was kept: its transaction was rolled back."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class PoolExhaustedError(DatabaseUnavailableError):
    """Every connection of the userspace's pool stayed in use for ``pool_timeout``
    seconds: raise ``pool_max``, or close ``all_users()``/``list_sessions()``
    iterators left unfinished (they hold a connection until closed)."""


class SchemaVersionError(PgUsersError):
    """The database holds a pgusers schema newer than this version of pgusers."""


class MigrationError(PgUsersError):
    """The tables could not be brought to this version of pgusers; the message says
    why and what to change. Nothing was changed."""


class WeakPasswordError(BadCallError):
    """A password the userspace's password policy refuses: too short, too long, or
    found in known data breaches. The message says which rule, never the password."""


class StoredDataError(PgUsersError):
    """Data read from the database cannot be decoded (written by other software,
    or damaged): for example an ``extra_data`` with an unknown ``$type`` tag."""


class LegacyImportError(BadCallError):
    """``import_legacy`` found legacy users that break pgusers' rules and no
    resolution allowed for them: nothing was imported. ``report`` lists each
    problem (an :class:`~pgusers.ImportReport`)."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


class ProviderUnavailableError(PgUsersError, ConnectionError):
    """An identity provider could not be asked what a sign-in needs (its discovery
    document did not answer, or answered something unusable). Nothing was written;
    the message says what failed."""
