"""pgusers over HTTP: a versioned JSON API under ``/v1`` and an admin console under
``/console``, as one ASGI application (``pip install "pgusers[web]"``).

``pgusers serve`` runs it under uvicorn; to mount it in an application of your own::

    from functools import partial
    from pgusers import AsyncUserSpace
    from pgusers.web import create_app

    auth = create_app(partial(AsyncUserSpace.connect, "app"))  # the database "app"
"""

from pgusers.web._app import create_app

__all__ = ["create_app"]
