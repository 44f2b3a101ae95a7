"""Django's per-request check, timed: the session and authentication middleware with
the database session backend, as a Django project has them out of the box.

Run by ``bench/run.py`` inside a virtual environment of its own (Django and psycopg
only); it is not part of pgusers. Usage: ``python django_check.py CONNINFO``. It
prints ``ready`` once set up, then answers each line ``N`` on stdin with a JSON list
of N timings in seconds, each one request passing through both middlewares to a
view that reads ``request.user``; an empty line ends it.
"""

import json
import sys
import time

import django
import psycopg
from django.conf import settings


def configure(conninfo: str) -> None:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-secret-key-bench-only-secret-key-0123456789",
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": params.get("dbname", "postgres"),
                "USER": params.get("user", ""),
                "PASSWORD": params.get("password", ""),
                "HOST": params.get("host", ""),
                "PORT": params.get("port", ""),
                # A connection kept across requests, as a production setting would.
                "CONN_MAX_AGE": None,
            }
        },
        SESSION_ENGINE="django.contrib.sessions.backends.db",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        USE_TZ=True,
    )
    django.setup()


def main() -> None:
    configure(sys.argv[1])
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.middleware import AuthenticationMiddleware
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.core.management import call_command
    from django.http import HttpResponse
    from django.test import RequestFactory

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench", "bench@example.com", "bench-password")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()

    def view(request):  # type: ignore[no-untyped-def]
        assert request.user.is_authenticated
        return HttpResponse(b"")

    handler = SessionMiddleware(AuthenticationMiddleware(view))
    factory = RequestFactory()
    cookie = {settings.SESSION_COOKIE_NAME: session.session_key}
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        timings = []
        for _ in range(int(line)):
            request = factory.get("/")
            request.COOKIES.update(cookie)
            started = time.perf_counter()
            handler(request)
            timings.append(time.perf_counter() - started)
        print(json.dumps(timings), flush=True)


if __name__ == "__main__":
    main()
