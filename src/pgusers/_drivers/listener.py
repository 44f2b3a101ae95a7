"""The session cache's listener: one connection of its own per process, outside the
pool, LISTENing on the schema's channel in a daemon thread, telling the cache what
changed. While it is not connected and caught up, the cache serves nothing."""

import json
import os
import select
import threading
import weakref
from typing import Any, Final

import psycopg

from pgusers._core.cache import SessionCache
from pgusers._core.sql import channel
from pgusers._errors import BadCallError

PROBE_WAIT: Final = 2.0
"""Seconds to wait for the probe notification when the listener starts."""
POLL: Final = 0.5
"""Seconds between looks at whether the listener should stop."""
RETRY: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
"""Waits between attempts to connect again after the connection was lost."""


class Listener:
    """LISTENs for changes to one schema's sessions and applies them to a cache."""

    def __init__(
        self,
        cache: SessionCache,
        schema: str,
        listen_conninfo: str,
        notify_conninfo: str,
        options: dict[str, Any],
    ) -> None:
        self.cache = cache
        self.channel = channel(schema)
        self.listen_conninfo = listen_conninfo
        self.notify_conninfo = notify_conninfo
        self.options = {key: value for key, value in options.items() if key == "autocommit"}
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        cache.quiet = self._quiet
        forget_in_child = weakref.WeakMethod(self._forked)
        os.register_at_fork(after_in_child=lambda: (method := forget_in_child()) and method())

    def start(self) -> None:
        """Subscribe, check that a notification sent the way pgusers' statements go
        reaches the subscription, and start listening (raises BadCallError if not)."""
        conn = self._subscribe()
        probe = json.dumps({"kind": "probe", "token": os.urandom(8).hex()})
        with psycopg.Connection.connect(self.notify_conninfo, autocommit=True) as sender:
            sender.execute("SELECT pg_notify(%s, %s)", (self.channel, probe))
        heard = [n.payload for n in conn.notifies(timeout=PROBE_WAIT, stop_after=1)]
        if probe not in heard:
            conn.close()
            raise BadCallError(
                "session_cache: a notification sent through the userspace's connection "
                "did not reach the listening one. Behind PgBouncer in transaction mode "
                "LISTEN cannot work: pass listen_conninfo= naming the PostgreSQL server "
                "itself"
            )
        self._conn = conn
        self.cache.set_live(True)
        self._thread = threading.Thread(target=self._run, name="pgusers-listener", daemon=True)
        self._thread.start()

    def _subscribe(self) -> psycopg.Connection[Any]:
        conn = psycopg.Connection.connect(self.listen_conninfo, autocommit=True)
        conn.execute(f"LISTEN {self.channel}")  # a fixed name of [a-z0-9_]
        return conn

    def _quiet(self) -> bool:
        conn = self._conn
        if conn is None or self._pid != os.getpid():
            return False
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError, psycopg.Error):
            return False
        return not readable

    def _run(self) -> None:
        try:
            self._listen()
        finally:  # however the thread ends, the cache stops trusting what it holds
            self.cache.set_live(False)

    def _listen(self) -> None:
        failures = 0
        while not self._stop.is_set():
            conn = self._conn
            try:
                if conn is None:
                    conn = self._subscribe()
                    self._conn = conn
                    self.cache.set_live(True)  # subscribed first, then start empty
                    failures = 0
                readable, _, _ = select.select([conn.fileno()], [], [], POLL)
                if readable:
                    with self.cache.taking_in():
                        for notification in conn.notifies(timeout=0):
                            self._apply(notification.payload)
            except (psycopg.Error, OSError, ValueError):
                self.cache.set_live(False)
                self._conn = None
                if conn is not None:
                    conn.close()
                self._stop.wait(RETRY[min(failures, len(RETRY) - 1)])
                failures += 1

    def _apply(self, payload: str) -> None:
        try:
            change = json.loads(payload)
        except ValueError:
            change = {}
        if isinstance(change, dict) and change.get("kind") == "probe":
            return
        # Anything unreadable forgets everything: never keep what may be wrong.
        self.cache.apply(change if isinstance(change, dict) else {})

    def _forked(self) -> None:
        # The child shares the parent's socket: it must neither read it nor trust it.
        self.cache.set_live(False)

    def restart_in_child(self) -> None:
        """In a forked child: a connection and a thread of its own."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._conn = None  # the parent's: left alone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pgusers-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.cache.set_live(False)
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(POLL * 4)
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            conn.close()
