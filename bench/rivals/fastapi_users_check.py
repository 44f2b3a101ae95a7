"""FastAPI-Users' per-request check, timed: its database token strategy reading a
token and its user, through the dependencies an application declares (an
SQLAlchemy ``AsyncSession`` per request, on asyncpg).

Run by ``bench/run.py`` inside a virtual environment of its own (FastAPI-Users,
SQLAlchemy and asyncpg only); it is not part of pgusers. Usage:
``python fastapi_users_check.py postgresql://USER@HOST:PORT/DBNAME``. It prints
``ready`` once set up, then answers each line ``N`` on stdin with a JSON list of N
timings in seconds; an empty line ends it.
"""

import asyncio
import json
import sys
import time
import uuid

from fastapi_users import BaseUserManager, UUIDIDMixin
from fastapi_users.authentication.strategy.db import DatabaseStrategy
from fastapi_users.password import PasswordHelper
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from fastapi_users_db_sqlalchemy.access_token import (
    SQLAlchemyAccessTokenDatabase,
    SQLAlchemyBaseAccessTokenTableUUID,
)
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
    pass


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = "bench-only"
    verification_token_secret = "bench-only"


async def main() -> None:
    engine = create_async_engine(
        sys.argv[1].replace("postgresql://", "postgresql+asyncpg://", 1), pool_size=1
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with sessions() as db:
        user = User(email="bench@example.com", hashed_password=PasswordHelper().hash("bench"))
        db.add(user)
        await db.commit()
        strategy = DatabaseStrategy(SQLAlchemyAccessTokenDatabase(db, AccessToken), 86400)
        token = await strategy.write_token(user)

    async def check() -> None:
        # What FastAPI-Users' authenticator resolves for each request.
        async with sessions() as db:
            manager = UserManager(SQLAlchemyUserDatabase(db, User))
            strategy = DatabaseStrategy(SQLAlchemyAccessTokenDatabase(db, AccessToken), 86400)
            found = await strategy.read_token(token, manager)
            assert found is not None and found.is_active

    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if not line.strip():
            break
        timings = []
        for _ in range(int(line)):
            started = time.perf_counter()
            await check()
            timings.append(time.perf_counter() - started)
        print(json.dumps(timings), flush=True)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
