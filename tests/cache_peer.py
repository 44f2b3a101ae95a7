"""Another process using the same userspace, for the session cache's tests: reads one
JSON call per line from stdin (``{"call": "kill_sessions", "args": [1], "kwargs": {}}``),
runs it, and answers one JSON line (``{"result": ...}`` or ``{"error": "..."}``).

Usage: python cache_peer.py CONNINFO SCHEMA
"""

import json
import sys

import pgusers
from pgusers.testing import FAST_HASHER


def main() -> None:
    conninfo, schema = sys.argv[1], sys.argv[2]
    with pgusers.UserSpace(conninfo=conninfo, schema=schema, hasher=FAST_HASHER) as usp:
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            call = json.loads(line)
            try:
                result = getattr(usp, call["call"])(*call.get("args", []), **call.get("kwargs", {}))
                plain = isinstance(result, int | str | None)
                answer = {"result": result if plain else repr(result)}
            except pgusers.PgUsersError as error:
                answer = {"error": str(error)}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
