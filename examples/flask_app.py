"""The smallest Flask application on pgusers: log in, "who am I", log out.

PGUSERS_DSN="dbname=app" flask --app examples.flask_app run
"""

import os

from flask import Flask, request
from flask_login import current_user, login_required

import pgusers
from pgusers.integrations.flask import PgUsers

app = Flask(__name__)
app.config["PGUSERS_DSN"] = os.environ.get("PGUSERS_DSN", "")
users = PgUsers(app)


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
