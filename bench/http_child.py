"""Serve pgusers' HTTP application for the benchmark: ``python http_child.py CONNINFO
SCHEMA PORT``. One uvicorn process, as ``pgusers serve`` runs it, without the access
log (a line per request would be measured as much as the service)."""

import sys
from functools import partial

import uvicorn

from pgusers import AsyncUserSpace
from pgusers.web import create_app

conninfo, schema, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = create_app(partial(AsyncUserSpace.connect, conninfo=conninfo, schema=schema), console=False)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
