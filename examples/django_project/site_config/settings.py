"""Settings of the example project. The database is the one ``PGUSERS_DSN`` names (a
libpq connection string; ``pgusers server dsn`` prints the embedded server's), else
"app" where the PG* variables say; pgusers keeps its tables in that same database,
in the schema "pgusers"."""

import os

from psycopg.conninfo import conninfo_to_dict

DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "only-for-local-development"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",  # lists pgusers' users, read-only, for administrators
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "pgusers.integrations.django",  # pgusers' users as the model "pgusers.User"
    "notes",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After Django's: request.user is the user of the pgusers session cookie.
    "pgusers.integrations.django.PgUsersMiddleware",
]
AUTHENTICATION_BACKENDS = ["pgusers.integrations.django.PgUsersBackend"]
PGUSERS = {
    "SCHEMA": "pgusers",
    # The session cookie is Secure (sent over HTTPS only) unless told otherwise; the
    # development server speaks plain HTTP, where a Secure cookie is never sent back,
    # so it is turned off while DEBUG is on. Leave it on in production.
    "COOKIE_SECURE": not DEBUG,
}
target = conninfo_to_dict(os.environ.get("PGUSERS_DSN", "dbname=app"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": target.pop("dbname", "app"),
        "HOST": target.pop("host", ""),
        "PORT": target.pop("port", ""),
        "USER": target.pop("user", ""),
        "PASSWORD": target.pop("password", ""),
        "OPTIONS": target,
    }
}
ROOT_URLCONF = "site_config.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
LOGIN_URL = "/login"
# Closes pgusers' connections to the test database before Django drops it.
TEST_RUNNER = "pgusers.integrations.django.PgUsersTestRunner"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
