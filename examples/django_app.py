"""The smallest Django project on pgusers, in one file: log in, "who am I", log out.

PGUSERS_DSN="dbname=app" python examples/django_app.py runserver
"""

import os
import sys

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.urls import path

from pgusers.integrations.django import pgusers_login, pgusers_logout

SETTINGS = {
    "ROOT_URLCONF": __name__,
    "INSTALLED_APPS": ["django.contrib.auth", "django.contrib.contenttypes"],
    "MIDDLEWARE": ["pgusers.integrations.django.PgUsersMiddleware"],
    "AUTHENTICATION_BACKENDS": ["pgusers.integrations.django.PgUsersBackend"],
    "PGUSERS": {"DSN": os.environ.get("PGUSERS_DSN", "")},
}


def log_in(request: HttpRequest) -> JsonResponse:
    response = JsonResponse({"ok": True})
    if pgusers_login(request, response, request.POST["username"], request.POST["password"]):
        return response
    return JsonResponse({"error": "wrong username or password"}, status=401)


@login_required
def me(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"userid": request.user.pk, "username": request.user.username})


def log_out(request: HttpRequest) -> JsonResponse:
    response = JsonResponse({"ok": True})
    pgusers_logout(request, response)
    return response


urlpatterns = [path("login", log_in), path("me", me), path("logout", log_out)]

if __name__ == "__main__":
    from django.conf import settings
    from django.core.management import execute_from_command_line

    settings.configure(DEBUG=True, SECRET_KEY=os.urandom(32).hex(), **SETTINGS)
    execute_from_command_line(sys.argv)
