"""pgusers: user accounts and server-side sessions for Python applications, in PostgreSQL.

>>> import pgusers
>>> usp = pgusers.UserSpace("userlist", host="db.example.com", user="app")
>>> userid = usp.create_user("ada", "correct horse", "ada@example.com")
>>> key, admin, userid = usp.validate_user("ada", "correct horse")
>>> rc, username, userid, extra = usp.check_key(key)

For asyncio applications, :class:`AsyncUserSpace` has the same methods as coroutines.
"""

from pgusers.aio import AsyncUserSpace
from pgusers.errors import (
    EXPIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    BadCallError,
    DatabaseUnavailableError,
    MigrationError,
    PgUsersError,
    PoolExhaustedError,
    SchemaVersionError,
    StoredDataError,
)
from pgusers.userspace import UserSpace

__all__ = [
    "EXPIRED",
    "NOT_FOUND",
    "OK",
    "REJECTED",
    "AsyncUserSpace",
    "BadCallError",
    "DatabaseUnavailableError",
    "MigrationError",
    "PgUsersError",
    "PoolExhaustedError",
    "SchemaVersionError",
    "StoredDataError",
    "UserSpace",
]
