"""Process B of the session-cache benchmark: ``python cache_child.py CONNINFO SCHEMA``.

For each key read from stdin: check it until the answer comes from memory, say
"ready", then check it without pause until it is NOT_FOUND, and print the Unix time
of that first NOT_FOUND."""

import sys
import time

import pgusers

conninfo, schema = sys.argv[1], sys.argv[2]
with pgusers.UserSpace(conninfo=conninfo, schema=schema, session_cache=True) as usp:
    for line in sys.stdin:
        key = line.strip()
        while usp.check_key(key).status == pgusers.OK and usp._core.cached(key) is None:
            time.sleep(0.001)
        print("ready", flush=True)
        while usp.check_key(key).status == pgusers.OK:
            pass
        print(time.time(), flush=True)
