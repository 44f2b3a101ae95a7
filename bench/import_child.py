"""Imports a pgusers 0.9 database in a process of its own; run by run.py.

Usage: python import_child.py CONNINFO
Prints one JSON object: seconds, users, sessions and the process's peak resident
memory in MB, before and after the import.
"""

import json
import resource
import sys

from argon2 import PasswordHasher

import pgusers


def peak_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM starts again at exec;
    ru_maxrss would still hold the peak of the process that started this one."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with pgusers.UserSpace(conninfo=sys.argv[1], hasher=hasher) as usp:
        before = peak_mb()
        report = usp.import_legacy("public")
    print(
        json.dumps(
            {
                "seconds": report.seconds,
                "users": report.users,
                "sessions": report.sessions,
                "peak_before_mb": before,
                "peak_after_mb": peak_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
