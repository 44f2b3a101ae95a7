"""Write the blocking driver from the asyncio one.

    python tools/async_to_sync.py          # write src/pgusers/_drivers/driver_sync.py
    python tools/async_to_sync.py --check  # exit 1 when the committed file is stale

The asyncio driver is written so that its blocking twin is what remains when the
``async`` and ``await`` keywords are taken out and each asyncio name is replaced by
the blocking one (``RENAMES``); lines between ``# ASYNC ONLY`` and ``# END ASYNC
ONLY`` are left out. The result is put in the project's style by ruff (unused
imports go, the rest is sorted and formatted), so the file is what a person would
have written, and a hand edit of it shows as a difference.
"""

import argparse
import difflib
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src/pgusers/_drivers/driver_async.py"
TARGET = ROOT / "src/pgusers/_drivers/driver_sync.py"

RENAMES = {
    "AsyncDriver": "SyncDriver",
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncConnection": "Connection",
    "AsyncConn": "Conn",
    "AsyncIterator": "Iterator",
    "AsyncOpeningLock": "OpeningLock",
    "AsyncRows": "Rows",
    "AcquireAsync": "Acquire",
    "ReleaseAsync": "Release",
    "NOT_OPEN_ASYNC": "NOT_OPEN",
    "asynccontextmanager": "contextmanager",
    "answers_async": "answers",
    "fetch_async": "fetch",
    "in_thread_async": "in_thread",
    "offload_async": "offload",
}

HEADER = (
    "# This file is generated from driver_async.py by tools/async_to_sync.py: edit that\n"
    "# file and run the tool; CI fails when the two disagree.\n"
)

DOCSTRING = '''"""The blocking driver: runs the core's operations on a connection pool, in the
calling thread.

Generated from :mod:`pgusers._drivers.driver_async`, which says what the driver
does and where its rules live.
"""'''


def without_async_only(text: str) -> str:
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        marker = line.strip()
        if marker == "# ASYNC ONLY":
            skipping = True
        elif marker == "# END ASYNC ONLY":
            skipping = False
        elif not skipping:
            kept.append(line)
    if skipping:
        raise SystemExit(f"{SOURCE.name}: an '# ASYNC ONLY' block is not ended")
    return "".join(kept)


def blocking(text: str) -> str:
    """Take out ``async``/``await`` and rename, token by token, so strings and
    comments are never touched by mistake."""
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    lines = text.splitlines(keepends=True)
    # Work from the end, so earlier positions stay valid.
    for token in reversed(tokens):
        if token.type != tokenize.NAME:
            continue
        (row, col), (_, end) = token.start, token.end
        line = lines[row - 1]
        if token.string in ("async", "await"):
            rest = line[end:]
            lines[row - 1] = line[:col] + rest[len(rest) - len(rest.lstrip(" ")) :]
        elif token.string in RENAMES:
            lines[row - 1] = line[:col] + RENAMES[token.string] + line[end:]
    return "".join(lines)


def generate() -> str:
    text = blocking(without_async_only(SOURCE.read_text()))
    docstring = re.match(r'"""(.|\n)*?"""', text)
    if docstring is None:
        raise SystemExit(f"{SOURCE.name} must start with its docstring")
    text = HEADER + DOCSTRING + text[docstring.end() :]
    ruff = [sys.executable, "-m", "ruff"]
    name = ["--stdin-filename", str(TARGET)]
    fixed = subprocess.run(
        [*ruff, "check", "--select", "F401,I", "--fix", "--quiet", *name, "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return subprocess.run(
        [*ruff, "format", "--quiet", *name, "-"],
        input=fixed,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the file is stale")
    parser.add_argument(
        "--target", type=Path, default=TARGET, help="the file to write or check (%(default)s)"
    )
    args = parser.parse_args()
    wanted = generate()
    if not args.check:
        args.target.write_text(wanted)
        return 0
    current = args.target.read_text() if args.target.exists() else ""
    if current == wanted:
        print(f"{args.target} is up to date")
        return 0
    diff = difflib.unified_diff(
        wanted.splitlines(keepends=True),
        current.splitlines(keepends=True),
        "generated",
        str(args.target),
    )
    sys.stdout.writelines(diff)
    print(
        f"\n{args.target} differs from what tools/async_to_sync.py makes of "
        f"{SOURCE.name}: edit the asyncio driver and run the tool",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
