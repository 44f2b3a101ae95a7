"""The per-request path taken apart, beside the rivals' checks."""

import hotpath
from context import Context, Row
from shared import (
    progress,
)


def hotpath_rows(ctx: Context) -> list[Row]:
    """check_key taken apart layer by layer, sync and async, and beside what a team
    would pick instead (see ``bench/hotpath.py``), pinned to one CPU."""
    usp, conninfo, key = ctx.usp, ctx.conninfo, ctx.key
    cpu, iterations, rivals = ctx.cpu, ctx.iterations, ctx.rivals
    progress("timing the per-request path layer by layer, pinned to one CPU")
    samples = hotpath.sync_rows(usp, conninfo, key, cpu, iterations)
    samples += hotpath.async_rows(usp, conninfo, key, cpu, iterations)
    if rivals:
        progress("timing Django's and FastAPI-Users' per-request checks beside check_key")
        samples += hotpath.rival_rows(usp, conninfo, key, cpu, iterations)
    return [
        Row(f"hot path: {name}", "1", median, p99, note=note) for name, median, p99, note in samples
    ]
