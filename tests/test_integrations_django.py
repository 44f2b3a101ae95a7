"""pgusers.integrations.django in a real Django project (settings made here; no
database of Django's), through Django's test clients."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_required, user_passes_test
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines
from django.test import AsyncClient, Client, RequestFactory, override_settings
from django.urls import path

import pgusers
from pgusers.integrations.django import (
    PgUser,
    PgUsersMiddleware,
    pgusers_login,
    pgusers_logout,
    pgusers_set_session_data,
    userspace,
)

from .support import FAST_HASHER, Clock, configure_django

configure_django(__name__)


def login_view(request: HttpRequest) -> JsonResponse:
    response = JsonResponse({})
    user = pgusers_login(request, response, request.POST["username"], request.POST["password"])
    if user is None:
        outcome = request.pgusers_outcome if hasattr(request, "pgusers_outcome") else None
        status = 429 if outcome and outcome.status == pgusers.THROTTLED else 401
        return JsonResponse({"error": "refused"}, status=status)
    response.content = json.dumps({"userid": user.pk}).encode()
    return response


def logout_view(request: HttpRequest) -> JsonResponse:
    response = JsonResponse({})
    response.content = json.dumps({"ended": pgusers_logout(request, response)}).encode()
    return response


@login_required
def me(request: HttpRequest) -> JsonResponse:
    user = request.user
    return JsonResponse(
        {"pk": user.pk, "username": user.username, "email": user.email, "data": user.session_data}
    )


@user_passes_test(lambda user: user.is_staff)
def staff(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"staff": request.user.username})


def page(request: HttpRequest) -> HttpResponse:
    template = engines["django"].from_string(
        "{% if user.is_authenticated %}Hello {{ user.username }}"
        "{% if user.is_staff %} (staff){% endif %}{% else %}Hello stranger{% endif %}"
    )
    return HttpResponse(template.render(request=request))


@login_required
async def async_me(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
    return JsonResponse({"pk": user.pk, "username": user.username})


@login_required
def cart(request: HttpRequest) -> JsonResponse:
    status = pgusers_set_session_data(request, json.loads(request.body))
    return JsonResponse({"status": status.name})


urlpatterns = [
    path("login", login_view),
    path("logout", logout_view),
    path("me", me),
    path("staff", staff),
    path("page", page),
    path("async-me", async_me),
    path("cart", cart),
]


@pytest.fixture(autouse=True)
def pgusers_settings(dsn: str, schema: str) -> Iterator[None]:
    configured = {"DSN": dsn, "SCHEMA": schema, "OPTIONS": {"hasher": FAST_HASHER}}
    with override_settings(PGUSERS=configured, ROOT_URLCONF=__name__):
        yield


@pytest.fixture
def ada(space: pgusers.UserSpace) -> int:
    return space.create_user("ada", "ada-pw-123", "ada@example.com")


def log_in(client: Client, username: str = "ada", password: str = "ada-pw-123") -> Any:
    return client.post("/login", {"username": username, "password": password}, secure=True)


def test_login_sets_the_cookie_and_request_user_follows_it(ada: int) -> None:
    client = Client()
    answer = log_in(client)
    assert answer.json() == {"userid": ada}
    morsel = answer.cookies["pgusers_session"]
    assert morsel["httponly"] and morsel["secure"] and morsel["samesite"] == "Lax"
    assert int(morsel["max-age"]) == 864000
    me = client.get("/me", secure=True).json()
    assert me == {"pk": ada, "username": "ada", "email": "ada@example.com", "data": None}


def test_login_required_redirects_the_anonymous(ada: int) -> None:
    answer = Client().get("/me", secure=True)
    assert answer.status_code == 302 and answer["location"].startswith("/login")


def test_authenticate_checks_pgusers_passwords(ada: int) -> None:
    assert isinstance(authenticate(None, username="ada", password="ada-pw-123"), PgUser)
    assert authenticate(None, username="ada", password="wrong") is None
    assert authenticate(None, username="x" * 5000, password="y") is None


def test_the_backend_gives_no_user_for_a_disabled_account(
    space: pgusers.UserSpace, ada: int
) -> None:
    from pgusers.integrations.django import PgUsersBackend

    admin = space.create_user("root", "root-pw-123", "root@example.com", admin=True)
    user = PgUsersBackend().get_user(admin)
    assert user is not None and user.is_staff
    space.disable_user(admin)
    space.disable_user(ada)
    assert PgUsersBackend().get_user(admin) is None
    assert PgUsersBackend().get_user(ada) is None


@pytest.mark.parametrize(
    ("username", "password"),
    [("x" * 151, "pw"), ("a\x00b", "pw"), ("ada", "p" * 1025)],
    ids=["long name", "NUL name", "long password"],
)
def test_malformed_credentials_are_a_refused_login_with_its_outcome(
    ada: int, username: Any, password: Any
) -> None:
    from django.test import RequestFactory

    request = RequestFactory().post("/login")
    assert authenticate(request, username=username, password=password) is None
    assert request.pgusers_outcome.status == pgusers.REJECTED


def test_logging_in_again_ends_the_session_the_cookie_held(
    space: pgusers.UserSpace, ada: int
) -> None:
    client = Client()
    log_in(client)
    space.create_user("bob", "bob-pw-123", "bob@example.com")
    log_in(client, "bob", "bob-pw-123")
    assert list(space.sessions(ada)) == []
    assert client.get("/me", secure=True).json()["username"] == "bob"


def test_a_throttled_login_says_so(space: pgusers.UserSpace, ada: int) -> None:
    space.set_login_policy(free_failures=1)
    client = Client()
    assert log_in(client, password="no").status_code == 401
    log_in(client, password="no")
    assert log_in(client).status_code == 429


def test_is_staff_is_the_admin_flag(space: pgusers.UserSpace, ada: int) -> None:
    client = Client()
    log_in(client)
    assert client.get("/staff", secure=True).status_code == 302
    space.set_admin(ada, True)
    assert client.get("/staff", secure=True).json() == {"staff": "ada"}


def test_templates_see_the_user(space: pgusers.UserSpace, ada: int) -> None:
    client = Client()
    assert client.get("/page", secure=True).content == b"Hello stranger"
    log_in(client)
    space.set_admin(ada, True)
    assert client.get("/page", secure=True).content == b"Hello ada (staff)"


def test_async_views_get_the_user_too(ada: int) -> None:
    import asyncio

    async def scenario() -> Any:
        client = AsyncClient()
        await client.post("/login", {"username": "ada", "password": "ada-pw-123"}, secure=True)
        return (await client.get("/async-me", secure=True)).json()

    assert asyncio.run(scenario()) == {"pk": ada, "username": "ada"}


def test_logout_ends_the_session_and_clears_the_cookie(space: pgusers.UserSpace, ada: int) -> None:
    client = Client()
    log_in(client)
    other = space.login("ada", "ada-pw-123").key
    answer = client.post("/logout", secure=True)
    assert answer.json() == {"ended": 1}
    assert answer.cookies["pgusers_session"].value == ""
    assert client.get("/me", secure=True).status_code == 302
    assert space.check_key(other).status == pgusers.OK


def test_a_killed_session_is_anonymous_at_once(space: pgusers.UserSpace, ada: int) -> None:
    client = Client()
    log_in(client)
    space.kill_sessions(ada)
    assert client.get("/me", secure=True).status_code == 302


def test_session_data_changes_during_the_session(ada: int) -> None:
    client = Client()
    log_in(client)
    answer = client.post("/cart", b'{"cart": ["tea"]}', "application/json", secure=True)
    assert answer.json() == {"status": "OK"}
    assert client.get("/me", secure=True).json()["data"] == {"cart": ["tea"]}


def test_the_cookie_name_and_secure_flag_come_from_settings(
    dsn: str, schema: str, ada: int
) -> None:
    configured = {
        "DSN": dsn,
        "SCHEMA": schema,
        "OPTIONS": {"hasher": FAST_HASHER},
        "COOKIE_NAME": "sid",
        "COOKIE_SECURE": False,
    }
    with override_settings(PGUSERS=configured):
        client = Client()
        answer = log_in(client)
        assert not answer.cookies["sid"]["secure"]
        assert client.get("/me").json()["pk"] == ada


def test_a_second_factor_and_a_recent_proof(dsn: str, schema: str, clock: Clock) -> None:
    from pgusers._core.factors import TOTP_PERIOD, totp_code
    from pgusers.integrations.django import (
        close_userspaces,
        pgusers_complete_login,
        require_recent_auth,
    )

    key = "a-test-secret-key-long-enough-for-aes"
    clock.now = (clock.now // TOTP_PERIOD) * TOTP_PERIOD + 1
    factory = RequestFactory()
    configured = {
        "DSN": dsn,
        "SCHEMA": schema,
        "OPTIONS": {"hasher": FAST_HASHER, "secret_key": key},
    }
    close_userspaces()
    with override_settings(PGUSERS=configured):
        usp = userspace()
        ada = usp.create_user("ada", "ada-pw-123", "ada@example.com")
        enrollment = usp.begin_totp(ada)
        usp.confirm_totp(ada, enrollment.factor_id, totp_code(enrollment.secret, clock.now))
        clock.advance(TOTP_PERIOD)
        request = factory.post("/login")
        response = HttpResponse()
        assert pgusers_login(request, response, "ada", "ada-pw-123") is None
        outcome = request.pgusers_outcome
        assert outcome.status == pgusers.MFA_REQUIRED
        code = totp_code(enrollment.secret, clock.now)
        user = pgusers_complete_login(request, response, outcome.ticket, totp=code)
        assert user is not None and user.pk == ada
        cookie = response.cookies["pgusers_session"].value

        @require_recent_auth(60)
        def sensitive(request: HttpRequest) -> HttpResponse:
            return HttpResponse(",".join(request.user.auth_methods))

        middleware = PgUsersMiddleware(sensitive)
        asked = factory.post("/sensitive")
        asked.COOKIES["pgusers_session"] = cookie
        assert middleware(asked).content == b"password,totp"
        clock.advance(61)
        late = factory.post("/sensitive")
        late.COOKIES["pgusers_session"] = cookie
        refused = middleware(late)
        assert refused.status_code == 403 and refused["X-Reauthenticate"] == "required"
        close_userspaces()


def test_passkeys_register_and_sign_in(dsn: str, schema: str) -> None:
    from pgusers.integrations.django import (
        close_userspaces,
        pgusers_begin_passkey_login,
        pgusers_begin_passkey_registration,
        pgusers_finish_passkey_login,
        pgusers_finish_passkey_registration,
    )

    from .authenticator import Authenticator

    origin = "https://testserver"
    factory = RequestFactory()
    close_userspaces()
    with override_settings(
        PGUSERS={"DSN": dsn, "SCHEMA": schema, "OPTIONS": {"hasher": FAST_HASHER}}
    ):
        usp = userspace()
        usp.set_webauthn("testserver", "Tests", [origin])
        ada = usp.create_user("ada", "ada-pw-123", "ada@example.com")
        phone = Authenticator(origin)
        request = factory.post("/login")
        response = HttpResponse()
        user = pgusers_login(request, response, "ada", "ada-pw-123")
        assert user is not None
        begun = pgusers_begin_passkey_registration(request, label="phone")
        assert begun.status == pgusers.OK
        pgusers_finish_passkey_registration(
            request, begun.challenge_id, phone.create(begun.options)
        )
        assert [f.kind for f in usp.factors(ada).factors] == ["passkey"]

        request, response = factory.post("/passkey"), HttpResponse()
        begun = pgusers_begin_passkey_login(request)
        answer = phone.get(begun.options)
        signed = pgusers_finish_passkey_login(request, response, begun.challenge_id, answer)
        assert signed is not None and signed.pk == ada
        assert "pgusers_session" in response.cookies
        again = pgusers_finish_passkey_login(request, HttpResponse(), begun.challenge_id, answer)
        assert again is None and request.pgusers_outcome.status == pgusers.NOT_FOUND
        assert pgusers_finish_passkey_login(request, HttpResponse(), "x", "not json") is None
        close_userspaces()


def test_permission_required_reads_pgusers_permissions(dsn: str, schema: str) -> None:
    from django.contrib.auth.decorators import permission_required

    from pgusers.integrations.django import close_userspaces

    factory = RequestFactory()
    close_userspaces()
    with override_settings(
        PGUSERS={"DSN": dsn, "SCHEMA": schema, "OPTIONS": {"hasher": FAST_HASHER}}
    ):
        usp = userspace()
        usp.define_role("billing", ["invoice:write"])
        ada = usp.create_user("ada", "ada-pw-123", "ada@example.com")
        usp.create_user("bob", "bob-pw-123", "bob@example.com")
        usp.grant_role(ada, "billing")

        @permission_required("invoice:write", raise_exception=True)
        def invoices(request: HttpRequest) -> HttpResponse:
            return HttpResponse(",".join(request.user.roles))

        middleware = PgUsersMiddleware(invoices)
        for name, expected in (("ada", 200), ("bob", 403)):
            request, response = factory.post("/login"), HttpResponse()
            assert pgusers_login(request, response, name, f"{name}-pw-123") is not None
            asked = factory.post("/invoices")
            asked.COOKIES["pgusers_session"] = response.cookies["pgusers_session"].value
            from django.core.exceptions import PermissionDenied

            try:
                answer = middleware(asked)
            except PermissionDenied:
                answer = HttpResponse(status=403)
            assert answer.status_code == expected
            if expected == 200:
                assert answer.content == b"billing"
        close_userspaces()
