"""pgusers wired into web frameworks, each an optional extra:

- :mod:`pgusers.integrations.starlette` (``pip install "pgusers[fastapi]"``): an
  authentication backend for Starlette's ``AuthenticationMiddleware``, FastAPI
  dependencies, login and logout helpers, on :class:`pgusers.AsyncUserSpace`.
- :mod:`pgusers.integrations.django` (``pgusers[django]``): an authentication
  backend, a middleware that sets ``request.user``, login and logout helpers.
- :mod:`pgusers.integrations.flask` (``pgusers[flask]``): a Flask-Login extension.

Each keeps the session key in an ``HttpOnly``, ``SameSite=Lax`` cookie (``Secure``
unless turned off for local development), named ``pgusers_session`` by default,
that lives as long as the session's time to live.
"""
