"""How the commands print: tables, JSON, times, progress; never a raw control character."""

import datetime as dt
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Final

import click

SHOWN_KEY_CHARS = 6


def escaped(text: str) -> str:
    """Return ``text`` with every character a terminal would act on, or not show
    (controls, format and bidirectional characters, unassigned code points), written
    as an escape such as ``\\x1b``, so stored data cannot drive the terminal."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def print_json(value: object) -> None:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    # JSON escapes C0 controls itself; DEL, C1 controls and format characters it
    # leaves as they are, and a terminal would act on them.
    click.echo(
        "".join(ch if ch.isprintable() or ch == "\n" else json.dumps(ch)[1:-1] for ch in text)
    )


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str) -> None:
    """Print rows under headers in aligned columns; ``empty`` ("no users") when there
    are none."""
    text_rows = [[escaped(str(cell)) for cell in row] for row in rows]
    if not text_rows:
        click.echo(empty)
        return
    widths = [
        max(len(cell) for cell in column) for column in zip(headers, *text_rows, strict=False)
    ]
    for row in [list(headers), *text_rows]:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


class Progress:
    """How far long work has come, on standard error: one line rewritten in place on
    a terminal, a line every so often otherwise (a log keeps them all)."""

    EVERY: Final = 50_000
    """Without a terminal, a line at each multiple of this, and the last count."""

    def __init__(self, label: str, unit: str) -> None:
        self.label = label
        self.unit = unit
        self.count = 0
        self.shown = -1
        self.finished = False
        self.terminal = sys.stderr.isatty()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *_: object) -> None:
        self.finish()

    def line(self) -> str:
        return f"{self.label}: {self.count:,} {self.unit}".rstrip()

    def update(self, count: int) -> None:
        self.count = count
        if self.terminal:
            click.echo(f"\r{self.line()}", nl=False, err=True)
            self.shown = count
        elif count // self.EVERY != self.shown // self.EVERY:
            click.echo(self.line(), err=True)
            self.shown = count

    def finish(self) -> None:
        """End the display: the terminal's line is left as it stands, with the last
        count; elsewhere the last count is written if it was not."""
        if self.finished:
            return
        self.finished = True
        if self.terminal and self.shown >= 0:
            click.echo(err=True)
        elif not self.terminal and self.shown != self.count:
            click.echo(self.line(), err=True)
        self.shown = self.count


def timestamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def shown_key(key: str, show: bool) -> str:
    return key if show else key[:SHOWN_KEY_CHARS] + "…"
