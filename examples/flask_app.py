"""A first Flask application on pgusers: register, log in, "who am I" (a page only a
signed-in user sees), log out.

    PGUSERS_DSN="$(pgusers server dsn)" PGUSERS_COOKIE_SECURE=0 flask --app examples.flask_app run

``PGUSERS_COOKIE_SECURE=0`` is for plain-HTTP development only: the session cookie
is ``Secure`` by default, and a browser sends a ``Secure`` cookie back over HTTPS
only, so on ``http://127.0.0.1:5000`` every login would seem forgotten at once.
"""

import os

from flask import Flask, request
from flask_login import current_user, login_required

import pgusers
from pgusers.integrations.flask import PgUsers

app = Flask(__name__)
app.config["PGUSERS_DSN"] = os.environ.get("PGUSERS_DSN", "")
app.config["PGUSERS_COOKIE_SECURE"] = os.environ.get("PGUSERS_COOKIE_SECURE") != "0"
users = PgUsers(app)


@app.post("/register")
def register() -> tuple[dict[str, object], int]:
    form = request.form
    try:
        userid = users.userspace.create_user(form["username"], form["password"], form["email"])
    except pgusers.BadCallError as problem:  # a taken name, a malformed address...
        return {"error": str(problem)}, 400
    return {"userid": userid}, 201


@app.post("/login")
def log_in() -> tuple[dict[str, object], int]:
    outcome = users.login(request.form["username"], request.form["password"])
    if outcome.status == pgusers.THROTTLED:
        return {"retry_after": outcome.retry_after}, 429
    if outcome.status != pgusers.OK:
        return {"error": "wrong username or password"}, 401
    return {"userid": outcome.userid}, 200


@app.get("/me")
@login_required
def me() -> dict[str, object]:
    return {"userid": current_user.userid, "username": current_user.username}


@app.post("/logout")
@login_required
def log_out() -> dict[str, object]:
    return {"ended": users.logout()}
