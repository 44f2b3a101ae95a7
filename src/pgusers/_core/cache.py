"""The session cache: recent ``check_key`` and ``check_session`` answers kept in
process memory, and the rules for forgetting them. No I/O: a listener in the drivers
tells it what changed.

An answer is served from memory only while all of these hold: the listener is
connected and has caught up (``live``); the answer is younger than the backstop; a
check now would not slide the session's stored expiry (so the expiry is written
exactly as without the cache); the session has not reached its end. Every change
that could make an answer wrong forgets it: a NOTIFY from any process, or the
events of this process's own statements, at once.
"""

import copy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from pgusers._results import OK, SessionInfo

MAX_ENTRIES: Final = 100_000
"""Answers kept at most; past that the cache starts again empty."""

_IMMUTABLE: Final = (str, int, float, bool, bytes, type(None))


@dataclass(frozen=True, slots=True)
class Entry:
    result: SessionInfo
    session_id: str
    userid: int
    verified: float
    """When the statement answered (``time.monotonic``)."""
    serve_until: float
    """The Unix time from which a check would write the expiry, or the session ends."""
    full: bool = False
    """Whether ``result`` holds the roles and permissions too (check_session's)."""


class SessionCache:
    """Answers about sessions by key (what ``check_session`` answers; ``check_key``'s
    are its first four fields), thread-safe."""

    def __init__(self, backstop: float) -> None:
        self.backstop = backstop
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._live = False
        self._epoch = 0  # moves with every forgetting: a check that read before it is not kept
        self._busy = 0  # the listener is taking in notifications
        self.quiet: Callable[[], bool] = lambda: True
        """Set by the listener: whether nothing unread waits on its connection."""
        self.served = 0
        """How many answers came from memory (the metrics' counter)."""

    # -- serving ---------------------------------------------------------------------

    def get(self, key: str, *, full: bool = False) -> SessionInfo | None:
        """The answer for ``key`` if it may be served now (with ``full``, only one that
        holds the roles and permissions), else None."""
        entry = self._entries.get(key)
        if entry is None or not self._live or self._busy or not self.quiet():
            return None
        if full and not entry.full:
            return None
        if time.monotonic() - entry.verified >= self.backstop or time.time() >= entry.serve_until:
            return None
        self.served += 1
        return _copied(entry.result)

    @property
    def epoch(self) -> int:
        return self._epoch

    def keep(
        self,
        key: str,
        result: SessionInfo,
        *,
        session_id: str,
        stored_expiry: float,
        hard_end: float | None,
        ttl: float,
        epoch: int,
        full: bool = False,
    ) -> None:
        """Keep an ``OK`` answer that a statement gave, unless something was forgotten
        since ``epoch`` (read before the statement ran)."""
        if result.status != OK or result.userid is None:
            return
        # A check slides the expiry once it is more than min(60 s, TTL/100) short of
        # "now + TTL"; until then it writes nothing, and the answer may be reused.
        slide_due = stored_expiry - ttl + min(60.0, ttl / 100)
        serve_until = min(slide_due, stored_expiry, hard_end or stored_expiry)
        entry = Entry(
            _copied(result), session_id, result.userid, time.monotonic(), serve_until, full
        )
        with self._lock:
            if epoch != self._epoch or not self._live:
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = entry

    # -- forgetting ------------------------------------------------------------------

    def set_live(self, live: bool) -> None:
        """Turn serving on (the listener has subscribed) or off (it lost its
        connection); either way, start again empty."""
        with self._lock:
            self._epoch += 1
            self._entries.clear()
            self._live = live

    def forget(self, *, userid: int | None = None, session_id: str | None = None) -> None:
        """Forget the answers about a session, or a user's, or (neither given) all."""
        with self._lock:
            self._epoch += 1
            if userid is None and session_id is None:
                self._entries.clear()
                return
            stale = [
                key
                for key, entry in self._entries.items()
                if entry.userid == userid or entry.session_id == session_id
            ]
            for key in stale:
                del self._entries[key]

    @contextmanager
    def taking_in(self) -> Iterator[None]:
        """Serve nothing while the listener reads and applies notifications."""
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1

    def forget_key(self, key: str) -> None:
        with self._lock:
            self._epoch += 1
            self._entries.pop(key, None)

    def apply(self, change: dict[str, Any]) -> None:
        """Forget what one announced change (an event, or a NOTIFY's payload) touches."""
        userid, session_id = change.get("userid"), change.get("session_id")
        self.forget(
            userid=userid if isinstance(userid, int) else None,
            session_id=session_id if isinstance(session_id, str) else None,
        )


def _copied(result: SessionInfo) -> SessionInfo:
    """The answer with session data of its own: a caller may change the copy it got."""
    if isinstance(result.extra_data, _IMMUTABLE):
        return result
    return result._replace(extra_data=copy.deepcopy(result.extra_data))
