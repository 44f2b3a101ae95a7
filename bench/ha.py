"""pgusers through a Patroni failover: two PostgreSQL nodes and etcd on this machine,
the leader killed under load.

    python bench/ha.py                  # needs etcd (Debian: etcd-server) and the
                                        # PostgreSQL server binaries (Debian:
                                        # postgresql); Patroni is installed into
                                        # bench/.venv-patroni on first use

One etcd, two Patroni nodes (synchronous mode, so only a standby that has every
commit may take over) and four threads of pgusers calls (a new user, a login, a
check) against ``host=a,b target_session_attrs=read-write``. After a few seconds of
load the leader node is killed outright (its Patroni and its postmaster, SIGKILL):
the other node's Patroni takes over when the leader key expires. The report says
how long callers saw no success, what they were answered meanwhile, and whether
every user and session whose call had returned is there on the new leader. With
``--switchover`` the leader is not killed: Patroni is asked for a planned
switchover to the standby, and the report gives the longest wait for a success.
Everything runs in a temporary directory, removed afterwards.
"""

import argparse
import glob
import itertools
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import venv
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pgusers
from shared import CHEAP_HASHER

HERE = Path(__file__).resolve().parent
PATRONI_ENV = HERE / ".venv-patroni"
THREADS = 4

Row = tuple[str, str]
"""One line of the report: what was measured, and its value."""


def progress(message: str) -> None:
    print(f"ha: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_bin_dir() -> Path:
    """The newest PostgreSQL server binaries Debian's packages put on this machine."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if not found:
        sys.exit("ha: no PostgreSQL server binaries (apt-get install postgresql)")
    return Path(found[-1]).parent


def patroni() -> Path:
    """Patroni's command, from a virtual environment of its own made on first use.

    As root the nodes run as ``postgres``, which must be able to run the environment's
    interpreter: it is made from the system's Python then, not from one under a home
    directory that only root may enter."""
    command = PATRONI_ENV / "bin" / "patroni"
    if not command.exists():
        progress(f"installing Patroni into {PATRONI_ENV}")
        system_python = shutil.which("python3", path="/usr/bin:/usr/local/bin")
        if server_user() and system_python:
            subprocess.run([system_python, "-m", "venv", str(PATRONI_ENV)], check=True)
        else:
            venv.create(PATRONI_ENV, with_pip=True)
        subprocess.run(
            [
                str(PATRONI_ENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "patroni[etcd3,psycopg3]",
            ],
            check=True,
        )
    return command


def server_user() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: as root, the nodes run as ``postgres``."""
    if os.geteuid() != 0:
        return None
    ids = pwd.getpwnam("postgres")
    return ids.pw_uid, ids.pw_gid


def node_config(root: Path, name: str, ports: dict[str, int], etcd: str, bin_dir: Path) -> str:
    """A Patroni node's configuration (JSON is YAML)."""
    config = {
        "scope": "pgusers-ha",
        "name": name,
        "log": {"dir": str(root / f"{name}-log"), "level": "INFO"},
        "restapi": {
            "listen": f"127.0.0.1:{ports['rest']}",
            "connect_address": f"127.0.0.1:{ports['rest']}",
        },
        "etcd3": {"host": etcd},
        "bootstrap": {
            "dcs": {
                "ttl": 20,
                "loop_wait": 1,
                "retry_timeout": 5,
                "synchronous_mode": True,
                "postgresql": {
                    "use_pg_rewind": False,
                    "parameters": {"max_wal_senders": 5, "max_replication_slots": 5},
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"auth": "trust"}],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{ports['pg']}",
            "connect_address": f"127.0.0.1:{ports['pg']}",
            "data_dir": str(root / name),
            "bin_dir": str(bin_dir),
            "pgpass": str(root / f"{name}.pgpass"),
            "authentication": {
                "superuser": {"username": "postgres", "password": "postgres"},
                "replication": {"username": "replicator", "password": "replicator"},
            },
            "parameters": {"unix_socket_directories": str(root)},
            "pg_hba": [
                "local all all trust",
                "host all all 127.0.0.1/32 trust",
                "host replication replicator 127.0.0.1/32 trust",
            ],
        },
    }
    return json.dumps(config, indent=2)


def rest(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except OSError:
        return 0, {}


def leads(port: int) -> bool:
    """Tell whether the Patroni whose REST API is on ``port`` holds the leader key."""
    return rest(port, "/leader")[0] == 200


def switch_over(port: int, leader: str, candidate: str) -> int:
    """Ask Patroni (on the leader's REST API) for a planned switchover; its status."""
    body = json.dumps({"leader": leader, "candidate": candidate}).encode()
    ask = urllib.request.Request(f"http://127.0.0.1:{port}/switchover", data=body, method="POST")
    try:
        with urllib.request.urlopen(ask, timeout=60) as answer:  # noqa: S310 - http, local
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def longest_gap(successes: list[tuple[float, float]], start: float, end: float) -> float:
    """The longest time between two calls' successes, from ``start`` to ``end``."""
    times = sorted({start, end, *(done for _, done in successes if start <= done <= end)})
    return max(later - earlier for earlier, later in itertools.pairwise(times))


def wait_for(condition: Any, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"ha: timed out waiting for {what}")
        time.sleep(0.2)


@contextmanager
def cluster() -> Iterator[dict[str, Any]]:
    """etcd and two Patroni nodes in a temporary directory; yields what they are."""
    etcd_binary = shutil.which("etcd")
    if etcd_binary is None:
        sys.exit("ha: no etcd (apt-get install etcd-server)")
    bin_dir, command, user = postgres_bin_dir(), patroni(), server_user()
    root = Path(tempfile.mkdtemp(prefix="pgusers-ha-"))
    if user:  # the nodes write their data, logs and sockets here
        os.chown(root, *user)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        client, peer = free_port(), free_port()
        etcd = f"127.0.0.1:{client}"
        processes["etcd"] = subprocess.Popen(
            [
                etcd_binary,
                "--data-dir",
                str(root / "etcd"),
                "--listen-client-urls",
                f"http://{etcd}",
                "--advertise-client-urls",
                f"http://{etcd}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        nodes: dict[str, dict[str, int]] = {}
        for name in ("node1", "node2"):
            ports = {"pg": free_port(), "rest": free_port()}
            nodes[name] = ports
            config = root / f"{name}.yml"
            config.write_text(node_config(root, name, ports, etcd, bin_dir))
            (root / f"{name}-log").mkdir()
            if user:
                for path in (config, root / f"{name}-log"):
                    os.chown(path, *user)
            processes[name] = subprocess.Popen(
                [str(command), str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                user=user[0] if user else None,
                group=user[1] if user else None,
                cwd=root,
            )
            if name == "node1":  # the first node bootstraps the cluster
                wait_for(lambda p=ports: leads(p["rest"]), "the first leader")

        def sync_standby() -> bool:
            status, cluster_info = rest(nodes["node1"]["rest"], "/cluster")
            members = cluster_info.get("members", []) if status == 200 else []
            return any(m.get("role") == "sync_standby" for m in members)

        wait_for(sync_standby, "a synchronous standby")
        conninfo = (
            "host=127.0.0.1,127.0.0.1 "
            f"port={nodes['node1']['pg']},{nodes['node2']['pg']} user=postgres "
            "dbname=postgres target_session_attrs=read-write connect_timeout=2"
        )
        yield {"root": root, "nodes": nodes, "processes": processes, "conninfo": conninfo}
    finally:
        for name, process in reversed(processes.items()):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            if name != "etcd":
                kill_postmaster(root / name)
        shutil.rmtree(root, ignore_errors=True)


def kill_postmaster(data_dir: Path) -> None:
    """Kill a node's postmaster and every process it started, at once, as a machine
    that loses power would: a backend left alive would go on answering for a while."""
    with suppress(OSError, ValueError, IndexError):
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    children.append(int(stat.parent.name))
        for pid in (postmaster, *children):
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)


class Load:
    """Threads that make users, log them in and check their keys, remembering every
    answer and every call that returned."""

    def __init__(self, usp: pgusers.UserSpace) -> None:
        self.usp = usp
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.successes: list[tuple[float, float]] = []  # (began, returned)
        self.failures: Counter[str] = Counter()
        self.users: list[str] = []
        self.keys: list[str] = []
        self.threads = [threading.Thread(target=self.work, args=(n,)) for n in range(THREADS)]

    def work(self, number: int) -> None:
        count = 0
        while not self.stop.is_set():
            count += 1
            name = f"t{number}-{count}"
            began = time.monotonic()
            try:
                self.usp.create_user(name, "ha-password", f"{name}@example.com")
                with self.lock:
                    self.users.append(name)
                key = self.usp.validate_user(name, "ha-password")[0]
                with self.lock:
                    self.keys.append(key)
                status = self.usp.check_key(key)[0]
                if status != pgusers.OK:
                    raise AssertionError(f"check_key answered {status} for a new session")
                with self.lock:
                    self.successes.append((began, time.monotonic()))
            except (pgusers.DatabaseUnavailableError, pgusers.PoolExhaustedError) as error:
                with self.lock:
                    self.failures[type(error).__name__] += 1
                time.sleep(0.05)
            except Exception as error:  # counted and reported
                with self.lock:
                    self.failures[f"{type(error).__name__}: {error}"[:120]] += 1
                time.sleep(0.05)

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def lost(load: Load, conninfo: str) -> tuple[list[str], list[str]]:
    """The acknowledged users and sessions the new leader does not have."""
    progress("checking every acknowledged user and session on the new leader")
    with pgusers.UserSpace(conninfo=conninfo, hasher=CHEAP_HASHER, pool_timeout=3) as usp:
        missing_users = [n for n in load.users if usp.find_user(username=n) is None]
        dead_keys = [k for k in load.keys if usp.check_key(k)[0] != pgusers.OK]
    return missing_users, dead_keys


def the_other(nodes: dict[str, Any], leader: str) -> tuple[str, int]:
    """The node that is not ``leader``: its name and its REST API's port."""
    return next((name, ports["rest"]) for name, ports in nodes["nodes"].items() if name != leader)


def planned(nodes: dict[str, Any], load: Load, leader: str, after: float) -> list[Row]:
    """Ask Patroni for a switchover from ``leader`` to the other node; what it took."""
    other, port = the_other(nodes, leader)
    progress(f"switching over from {leader} to {other} (planned)")
    asked_at = time.monotonic()
    status = switch_over(nodes["nodes"][leader]["rest"], leader, other)
    wait_for(lambda: leads(port), "the new leader")
    promoted_at = time.monotonic()
    time.sleep(after)
    gap = longest_gap(load.successes, asked_at, time.monotonic())
    return [
        ("Patroni's answer to the switchover", f"HTTP {status}"),
        ("the other node is leader", f"{promoted_at - asked_at:.2f} s after asking"),
        ("longest time without a success, from asking on", f"{gap:.2f} s"),
    ]


def killed(nodes: dict[str, Any], load: Load, leader: str, after: float) -> list[Row]:
    """Kill the ``leader`` node outright; how long callers waited."""
    _, port = the_other(nodes, leader)
    progress(f"killing {leader} (Patroni and its postmaster, SIGKILL)")
    nodes["processes"][leader].kill()
    kill_postmaster(nodes["root"] / leader)
    killed_at = time.monotonic()  # the node is gone by now
    wait_for(lambda: leads(port), "a new leader", 120)
    promoted_at = time.monotonic()

    # Only calls that began after the kill: one under way may still finish on the
    # old leader, just after it.
    def resumed() -> list[float]:
        return [done for began, done in load.successes if began > killed_at]

    wait_for(lambda: bool(resumed()), "calls to succeed", 120)
    resumed_at = min(resumed())
    time.sleep(after)
    last_before = max(done for _, done in load.successes if done <= killed_at)
    return [
        ("last success before the kill", f"{killed_at - last_before:.3f} s before it"),
        (
            "the standby's Patroni is leader (its REST API)",
            f"{promoted_at - killed_at:.2f} s after the kill",
        ),
        ("first success after the kill", f"{resumed_at - killed_at:.2f} s after it"),
        ("no success for (callers' downtime)", f"{resumed_at - last_before:.2f} s"),
    ]


def report(load: Load, conninfo: str, event: list[Row]) -> None:
    """Print the run as a Markdown table: the load, the event, and what was lost."""
    missing_users, dead_keys = lost(load, conninfo)
    rows: list[Row] = [
        ("PostgreSQL", f"{postgres_bin_dir().parent.name} (Debian), 2 nodes, synchronous mode"),
        ("calls that succeeded (user + login + check)", f"{len(load.successes):,}"),
        *event,
        *((f"failures: {what}", f"{count:,}") for what, count in sorted(load.failures.items())),
        ("users whose create_user returned", f"{len(load.users):,}"),
        ("of them missing on the new leader", str(len(missing_users))),
        ("sessions whose login returned", f"{len(load.keys):,}"),
        ("of them not OK on the new leader", str(len(dead_keys))),
    ]
    print("| measure | value |")
    print("|---|---|")
    for measure, value in rows:
        print(f"| {measure} | {value} |")


def main() -> None:
    # The pool says so for each connection it loses or cannot make: the report counts.
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=float, default=5.0, help="seconds of load first")
    parser.add_argument("--after", type=float, default=5.0, help="seconds after resuming")
    parser.add_argument(
        "--switchover",
        action="store_true",
        help="a planned switchover through Patroni's REST API instead of killing the leader",
    )
    args = parser.parse_args()
    with cluster() as nodes:
        progress("cluster up: a leader and a synchronous standby")
        with (
            pgusers.UserSpace(
                conninfo=nodes["conninfo"], hasher=CHEAP_HASHER, pool_timeout=3
            ) as usp,
            Load(usp) as load,
        ):
            time.sleep(args.before)
            leader = next(name for name, ports in nodes["nodes"].items() if leads(ports["rest"]))
            event = (planned if args.switchover else killed)(nodes, load, leader, args.after)
        report(load, nodes["conninfo"], event)


if __name__ == "__main__":
    main()
