"""The first application of each framework, as getting started shows it: register, log
in, a protected page, log out. The Django project runs its own tests with
``manage.py test``, as its user would."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

EXAMPLES = Path(__file__).parent.parent / "examples"


def libpq_environment(conninfo: str) -> dict[str, str]:
    """The PG* variables that reach the server ``conninfo`` names."""
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD"}
    parts = psycopg.conninfo.conninfo_to_dict(conninfo)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    environment.update({names[k]: str(v) for k, v in parts.items() if k in names})
    return environment


def test_the_django_project_passes_its_own_tests(server_dsn: str) -> None:
    environment = libpq_environment(server_dsn)
    environment["PGUSERS_DSN"] = f"dbname=pgusers_example_{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [sys.executable, "-W", "error", "manage.py", "test", "--noinput", "-v", "2"],
        cwd=EXAMPLES / "django_project",
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Ran 6 tests" in result.stderr and "OK" in result.stderr
