"""pgusers: user accounts and server-side sessions for Python applications, in PostgreSQL.

>>> import pgusers
>>> usp = pgusers.UserSpace("userlist", host="db.example.com", user="app")
>>> userid = usp.create_user("ada", "correct horse", "ada@example.com")
>>> key, admin, userid = usp.validate_user("ada", "correct horse")
>>> status, username, userid, extra = usp.check_key(key)

For asyncio applications, :class:`AsyncUserSpace` has the same methods as coroutines.
"""

from pgusers._aio import AsyncUserSpace
from pgusers._core.recording import acting_as
from pgusers._errors import (
    BadCallError,
    DatabaseError,
    DatabaseUnavailableError,
    LegacyImportError,
    MigrationError,
    PgUsersError,
    PoolExhaustedError,
    SchemaVersionError,
    StoredDataError,
    WeakPasswordError,
)
from pgusers._results import (
    DISABLED,
    EXPIRED,
    MFA_REQUIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    THROTTLED,
    AsyncRows,
    CheckResult,
    Enrollment,
    Event,
    Factor,
    Factors,
    FoundUser,
    ImportReport,
    LoginFailureRow,
    LoginOutcome,
    LoginResult,
    Member,
    Org,
    PasskeyChallenge,
    Role,
    RoleGrant,
    Rows,
    Session,
    SessionInfo,
    SessionRow,
    Settings,
    Status,
    UserRow,
)
from pgusers._userspace import UserSpace
from pgusers._version import __version__ as __version__

__all__ = [
    "DISABLED",
    "EXPIRED",
    "MFA_REQUIRED",
    "NOT_FOUND",
    "OK",
    "REJECTED",
    "THROTTLED",
    "AsyncRows",
    "AsyncUserSpace",
    "BadCallError",
    "CheckResult",
    "DatabaseError",
    "DatabaseUnavailableError",
    "Enrollment",
    "Event",
    "Factor",
    "Factors",
    "FoundUser",
    "ImportReport",
    "LegacyImportError",
    "LoginFailureRow",
    "LoginOutcome",
    "LoginResult",
    "Member",
    "MigrationError",
    "Org",
    "PasskeyChallenge",
    "PgUsersError",
    "PoolExhaustedError",
    "Role",
    "RoleGrant",
    "Rows",
    "SchemaVersionError",
    "Session",
    "SessionInfo",
    "SessionRow",
    "Settings",
    "Status",
    "StoredDataError",
    "UserRow",
    "UserSpace",
    "WeakPasswordError",
    "acting_as",
]
