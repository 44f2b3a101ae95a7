"""The command that makes a directory of breached-password ranges for machines
without internet: breached-passwords import."""

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Final, TextIO

import click

from pgusers._errors import BadCallError
from pgusers.cli._group import main
from pgusers.cli._output import Progress

LINE: Final = re.compile(r"([0-9A-Fa-f]{40}):([0-9]{1,12})")
"""A line of a full download: a password's SHA-1 in hex, a colon, how often it was seen."""
FLUSH: Final = 10_000
"""Lines of one prefix held in memory at most before they are written."""


@main.group(name="breached-passwords")
def breached_passwords() -> None:
    """The breached-password check's offline source."""


@breached_passwords.command(name="import", short_help="Make range files from a download.")
@click.argument("source", type=click.File("r", encoding="ascii", errors="strict", lazy=True))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def import_ranges(source: TextIO, directory: Path) -> None:
    """Make DIRECTORY, the range files of SOURCE, for PGUSERS_BREACH_SOURCE.

    SOURCE is a download of Have I Been Pwned's SHA-1 hashes as one file (lines
    HASH:COUNT, as its downloader writes them; "-" reads standard input). DIRECTORY
    must not exist yet: it appears whole once every line has been read, with one
    file per five-digit prefix holding that prefix's SUFFIX:COUNT lines, the format
    the range API answers in. Give the userspace breach_source=DIRECTORY (or set
    PGUSERS_BREACH_SOURCE) and set_password_policy(breached=...)."""
    if directory.exists():
        raise BadCallError(f"{directory} exists already; give a new directory")
    parent = directory.absolute().parent
    if not parent.is_dir():
        raise BadCallError(f"{parent} is not a directory")
    building = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    try:
        with Progress("read", "hashes") as progress:
            prefixes = _write_ranges(source, building, progress)
        os.rename(building, directory)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    click.echo(f"wrote {prefixes:,} range files to {directory}")


def _write_ranges(source: TextIO, into: Path, progress: Progress) -> int:
    """Write the ranges of ``source`` into ``into``; return how many prefixes it had.
    Sorted input (as downloaded) writes each file once; lines out of order are added
    to their file; memory holds at most FLUSH lines."""
    prefix, held = "", list[str]()

    def flush() -> None:
        if held:
            with (into / prefix).open("a", encoding="ascii") as out:
                out.writelines(held)
            held.clear()

    try:
        for number, line in enumerate(source, 1):
            found = LINE.fullmatch(line.strip())
            if found is None:
                if not line.strip():
                    continue
                raise BadCallError(f"line {number} of SOURCE is not HASH:COUNT (a SHA-1 in hex)")
            digest = found.group(1).upper()
            if digest[:5] != prefix or len(held) >= FLUSH:
                flush()
                prefix = digest[:5]
            held.append(f"{digest[5:]}:{int(found.group(2))}\n")
            progress.update(number)
        flush()
    except UnicodeDecodeError:
        raise BadCallError("SOURCE is not a text file of HASH:COUNT lines") from None
    return sum(1 for _ in into.iterdir())
