"""Passkeys on both APIs, answered by a software authenticator (tests/authenticator.py):
registering one, signing in with it and no password, using it as the second step
after a password, and every refusal: each leaves an event and opens no session."""

import threading
from typing import Any

import pytest

import pgusers
from pgusers import DISABLED, EXPIRED, MFA_REQUIRED, NOT_FOUND, OK, REJECTED, THROTTLED

from .authenticator import Authenticator
from .support import Clock

ORIGIN = "https://app.example.com"
PASSWORD = "s3cret-pw"


@pytest.fixture
def site(usp: Any) -> Any:
    usp.set_webauthn("example.com", "Example", [ORIGIN])
    return usp


@pytest.fixture
def ada(site: Any) -> int:
    return int(site.create_user("ada", PASSWORD, "ada@example.com"))


@pytest.fixture
def phone() -> Authenticator:
    return Authenticator(ORIGIN)


def register(
    usp: Any,
    authenticator: Authenticator,
    name: str = "ada",
    label: str = "phone",
    key: str | None = None,
) -> str:
    """Register a passkey from a new session of ``name`` (or from session ``key``)."""
    key = key or usp.login(name, PASSWORD).key
    begun = usp.begin_passkey_registration(key, label=label)
    assert begun.status == OK, begun
    answer = authenticator.create(begun.options)
    return str(usp.finish_passkey_registration(key, begun.challenge_id, answer))


def sign_in(usp: Any, authenticator: Authenticator, **answer: Any) -> pgusers.LoginOutcome:
    begun = usp.begin_passkey_login()
    outcome: pgusers.LoginOutcome = usp.finish_passkey_login(
        begun.challenge_id, authenticator.get(begun.options, **answer), source="192.0.2.7"
    )
    return outcome


def kinds(usp: Any, userid: int | None = None) -> list[str]:
    return [event.kind for event in usp.events(userid=userid)]


def reasons(usp: Any) -> list[str]:
    return [
        event.detail.get("reason", "")
        for event in usp.events(kinds=["login.failed", "passkey.cloned"])
    ]


# -- the relying party -------------------------------------------------------------------


def test_the_relying_party_is_a_setting(usp: Any) -> None:
    with pytest.raises(pgusers.BadCallError, match="set_webauthn"):
        usp.begin_passkey_login()
    usp.set_webauthn(
        "Example.com", "Example", ["https://example.com", "https://a.example.com:8443"]
    )
    settings = usp.settings()
    assert (settings.webauthn_rp_id, settings.webauthn_origins) == (
        "example.com",
        ["https://example.com", "https://a.example.com:8443"],
    )
    usp.set_webauthn("localhost", "Dev", ["http://localhost:8000"])  # while developing
    assert usp.settings().webauthn_origins == ["http://localhost:8000"]


@pytest.mark.parametrize(
    ("rp_id", "origins", "message"),
    [
        ("example.com", ["https://evil.test"], "not on example.com"),
        ("example.com", ["http://example.com"], "http only for localhost"),
        ("example.com", [], "between 1 and"),
        ("example.com", "https://example.com", "a list of origins"),
        ("exa mple.com", ["https://example.com"], "host name"),
        ("example.com", ["https://example.com/path"], "https://host"),
    ],
)
def test_a_bad_relying_party_is_refused(usp: Any, rp_id: str, origins: Any, message: str) -> None:
    with pytest.raises(pgusers.BadCallError, match=message):
        usp.set_webauthn(rp_id, "Example", origins)
    assert usp.settings().webauthn_rp_id is None


# -- registering ----------------------------------------------------------------------


def test_a_signed_in_user_registers_a_passkey(site: Any, ada: int, phone: Authenticator) -> None:
    factor_id = register(site, phone)
    (factor,) = site.factors(ada).factors
    assert (factor.factor_id, factor.kind, factor.label, factor.confirmed) == (
        factor_id,
        "passkey",
        "phone",
        True,
    )
    enrolled = [e for e in site.events(userid=ada) if e.kind == "mfa.enrolled"]
    assert enrolled[0].detail == {"factor_id": factor_id, "kind": "passkey", "label": "phone"}


def test_registration_options_ask_for_verification_and_exclude_known_keys(
    site: Any, ada: int, phone: Authenticator
) -> None:
    import json

    key = site.login("ada", PASSWORD).key
    register(site, phone, key=key)
    options = json.loads(site.begin_passkey_registration(key).options)
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert len(options["excludeCredentials"]) == 1
    assert options["rp"] == {"id": "example.com", "name": "Example"}
    # The user handle is random, the same for each registration, never the userid.
    handle = options["user"]["id"]
    assert handle != str(ada) and len(handle) >= 40
    assert json.loads(site.begin_passkey_registration(key).options)["user"]["id"] == handle


def test_registering_needs_a_recent_proof(
    site: Any, ada: int, phone: Authenticator, clock: Clock
) -> None:
    key = site.login("ada", PASSWORD).key
    clock.advance(601)
    assert site.begin_passkey_registration(key).status == REJECTED
    assert site.reauthenticate(key, password=PASSWORD) == OK
    assert site.begin_passkey_registration(key).status == OK
    assert site.begin_passkey_registration("no-such-key").status == NOT_FOUND


def test_a_registration_is_finished_once_by_the_session_that_began_it(
    site: Any, ada: int, phone: Authenticator, clock: Clock
) -> None:
    key = site.login("ada", PASSWORD).key
    other = site.login("ada", PASSWORD).key
    begun = site.begin_passkey_registration(key)
    answer = phone.create(begun.options)
    with pytest.raises(pgusers.BadCallError, match="another session"):
        site.finish_passkey_registration(other, begun.challenge_id, answer)
    with pytest.raises(pgusers.BadCallError, match="finished already"):
        site.finish_passkey_registration(key, begun.challenge_id, answer)
    begun = site.begin_passkey_registration(key)
    clock.advance(301)
    with pytest.raises(pgusers.BadCallError, match="expired"):
        site.finish_passkey_registration(key, begun.challenge_id, phone.create(begun.options))
    assert site.factors(ada).factors == ()


@pytest.mark.parametrize(
    "bent",
    [
        {"origin": "https://evil.test"},
        {"rp_id": "evil.test"},
    ],
)
def test_a_registration_for_another_site_is_refused(
    site: Any, ada: int, phone: Authenticator, bent: dict[str, str]
) -> None:
    key = site.login("ada", PASSWORD).key
    begun = site.begin_passkey_registration(key)
    with pytest.raises(pgusers.BadCallError, match="could not be verified"):
        site.finish_passkey_registration(
            key, begun.challenge_id, phone.create(begun.options, **bent)
        )
    assert site.factors(ada).factors == ()


def test_a_registration_without_user_verification_is_refused(
    site: Any, ada: int, phone: Authenticator
) -> None:
    phone.verifies_user = False
    with pytest.raises(pgusers.BadCallError, match="could not be verified"):
        register(site, phone)
    assert site.factors(ada).factors == ()


# -- signing in without a password ----------------------------------------------------------


def test_a_passkey_signs_in_without_a_password(site: Any, ada: int, phone: Authenticator) -> None:
    register(site, phone)
    outcome = sign_in(site, phone)
    assert (outcome.status, outcome.userid) == (OK, ada)
    info = site.check_session(outcome.key)
    assert info.auth_methods == ("passkey",) and info.userid == ada
    assert site.factors(ada).factors[0].last_used_at is not None
    succeeded = [e for e in site.events(userid=ada) if e.kind == "login.succeeded"]
    assert succeeded[0].detail["method"] == "passkey"


def test_a_name_binds_the_login_to_its_user(site: Any, ada: int, phone: Authenticator) -> None:
    register(site, phone)
    site.create_user("bob", PASSWORD, "bob@example.com")
    begun = site.begin_passkey_login("bob")
    outcome = site.finish_passkey_login(begun.challenge_id, phone.get(begun.options))
    assert outcome.status == REJECTED
    begun = site.begin_passkey_login("ADA")
    assert site.finish_passkey_login(begun.challenge_id, phone.get(begun.options)).status == OK


def test_an_answer_is_accepted_once(site: Any, ada: int, phone: Authenticator) -> None:
    register(site, phone)
    begun = site.begin_passkey_login()
    answer = phone.get(begun.options)
    assert site.finish_passkey_login(begun.challenge_id, answer).status == OK
    assert site.finish_passkey_login(begun.challenge_id, answer).status == NOT_FOUND
    assert "passkey: challenge unknown or used" in reasons(site)
    assert len(list(site.sessions(ada))) == 2  # the registration's login, and one


def test_racing_answers_to_one_challenge_open_one_session(
    dsn: str, schema: str, phone: Authenticator
) -> None:
    from .support import FAST_HASHER

    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        usp.set_webauthn("example.com", "Example", [ORIGIN])
        ada = usp.create_user("ada", PASSWORD, "ada@example.com")
        register(usp, phone)
        usp.kill_sessions(ada)
        begun = usp.begin_passkey_login()
        answer = phone.get(begun.options)
        barrier = threading.Barrier(8)
        outcomes: list[pgusers.Status] = []

        def finish() -> None:
            barrier.wait()
            outcomes.append(usp.finish_passkey_login(begun.challenge_id, answer).status)

        threads = [threading.Thread(target=finish) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count(OK) == 1 and set(outcomes) == {OK, NOT_FOUND}, outcomes
        assert len(list(usp.sessions(ada))) == 1


@pytest.mark.parametrize(
    ("bent", "reason"),
    [
        ({"origin": "https://evil.test"}, "origin"),
        ({"rp_id": "evil.test"}, "RP ID"),
    ],
)
def test_an_answer_for_another_site_is_refused(
    site: Any, ada: int, phone: Authenticator, bent: dict[str, str], reason: str
) -> None:
    register(site, phone)
    assert sign_in(site, phone, **bent).status == REJECTED
    assert any(reason.lower() in r.lower() for r in reasons(site)), reasons(site)


def test_an_answer_without_user_verification_is_refused(
    site: Any, ada: int, phone: Authenticator
) -> None:
    register(site, phone)
    phone.verifies_user = False
    assert sign_in(site, phone).status == REJECTED
    assert any("verif" in r.lower() for r in reasons(site)), reasons(site)


def test_an_expired_challenge_is_refused(
    site: Any, ada: int, phone: Authenticator, clock: Clock
) -> None:
    register(site, phone)
    begun = site.begin_passkey_login()
    clock.advance(301)
    assert site.finish_passkey_login(begun.challenge_id, phone.get(begun.options)).status == EXPIRED


def test_an_unknown_or_removed_credential_is_refused(
    site: Any, ada: int, phone: Authenticator
) -> None:
    stranger = Authenticator(ORIGIN)
    other_site_user = site.create_user("eve", PASSWORD, "eve@example.com")
    register(site, stranger, "eve")
    site.remove_factor(other_site_user, site.factors(other_site_user).factors[0].factor_id)
    assert sign_in(site, stranger).status == REJECTED
    assert "passkey: unknown credential" in reasons(site)


def test_a_count_that_goes_back_flags_the_credential(
    site: Any, ada: int, phone: Authenticator
) -> None:
    register(site, phone)
    assert sign_in(site, phone, sign_count=10).status == OK
    copy = phone.credentials[0]
    assert sign_in(site, phone, credential=copy, sign_count=7).status == REJECTED
    (factor,) = site.factors(ada).factors
    assert factor.cloned
    assert "passkey.cloned" in kinds(site, ada)
    # Flagged: even a good count is refused, until an administrator clears the flag.
    assert sign_in(site, phone, sign_count=11).status == REJECTED
    assert site.clear_passkey_flag(ada, factor.factor_id) == OK
    assert site.clear_passkey_flag(ada, factor.factor_id) == NOT_FOUND
    assert "passkey.flag_cleared" in kinds(site, ada)
    assert sign_in(site, phone, sign_count=12).status == OK


def test_a_forged_answer_with_a_low_count_flags_nothing(
    site: Any, ada: int, phone: Authenticator
) -> None:
    register(site, phone)
    assert sign_in(site, phone, sign_count=10).status == OK
    forger = Authenticator(ORIGIN)
    begun = site.begin_passkey_login()
    forged = forger.get(begun.options, credential=_copy_of(phone, forger), sign_count=1)
    assert site.finish_passkey_login(begun.challenge_id, forged).status == REJECTED
    assert not site.factors(ada).factors[0].cloned


def _copy_of(real: Authenticator, forger: Authenticator) -> Any:
    """A credential with the real one's id and handle and a key of the forger's own."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from .authenticator import Credential

    original = real.credentials[0]
    return Credential(
        original.credential_id,
        ec.generate_private_key(ec.SECP256R1()),
        original.user_handle,
        original.rp_id,
    )


def test_refusals_count_in_the_login_throttle(site: Any, ada: int, phone: Authenticator) -> None:
    register(site, phone)
    site.set_login_policy(source_limit=3)
    for _ in range(3):
        assert sign_in(site, phone, origin="https://evil.test").status == REJECTED
    assert sign_in(site, phone).status == THROTTLED


def test_a_disabled_user_gets_no_session(site: Any, ada: int, phone: Authenticator) -> None:
    register(site, phone)
    site.disable_user(ada, True)
    assert sign_in(site, phone).status == DISABLED
    assert list(site.sessions(ada)) == []


# -- the second step after a password ------------------------------------------------------


def test_a_passkey_is_a_second_factor_after_a_password(
    site: Any, ada: int, phone: Authenticator
) -> None:
    register(site, phone)
    first = site.login("ada", PASSWORD)
    assert first.status == MFA_REQUIRED and "passkey" in first.factors
    begun = site.begin_passkey_login(ticket=first.ticket)
    assert begun.status == OK
    done = site.complete_login(first.ticket, passkey=phone.get(begun.options))
    assert done.status == OK
    assert site.check_session(done.key).auth_methods == ("password", "passkey")
    assert site.begin_passkey_login(ticket=first.ticket).status == NOT_FOUND


def test_a_second_step_answer_is_checked_like_a_login(
    site: Any, ada: int, phone: Authenticator
) -> None:
    register(site, phone)
    ticket = site.login("ada", PASSWORD).ticket
    begun = site.begin_passkey_login(ticket=ticket)
    answer = phone.get(begun.options, origin="https://evil.test")
    assert site.complete_login(ticket, passkey=answer).status == REJECTED
    # The challenge was taken: the ticket needs a new one.
    assert site.complete_login(ticket, passkey=phone.get(begun.options)).status == REJECTED
    begun = site.begin_passkey_login(ticket=ticket)
    assert site.complete_login(ticket, passkey=phone.get(begun.options)).status == OK
    assert "login.mfa_failed" in kinds(site, ada)


def test_bad_answers_are_refused_before_anything_is_written(site: Any, ada: int) -> None:
    for bad in ("not json", "[]", '{"id": 5}', "x" * 70_000):
        with pytest.raises(pgusers.BadCallError):
            site.finish_passkey_login("challenge", bad)
    with pytest.raises(pgusers.BadCallError, match="not both"):
        site.begin_passkey_login("ada", ticket="t" * 43)
    with pytest.raises(pgusers.BadCallError, match="exactly one"):
        site.complete_login("t" * 43, totp="123456", passkey="{}")


def test_a_passkey_is_renamed_and_removed_like_any_factor(
    site: Any, ada: int, phone: Authenticator
) -> None:
    factor_id = register(site, phone)
    assert site.rename_factor(ada, factor_id, "laptop") == OK
    assert site.factors(ada).factors[0].label == "laptop"
    assert site.rename_factor(ada, "no-such-factor", "x") == NOT_FOUND
    renamed = [e for e in site.events(userid=ada) if e.kind == "mfa.renamed"]
    assert renamed[0].detail == {"factor_id": factor_id, "label": "laptop"}
    assert site.remove_factor(ada, factor_id) == OK
    assert sign_in(site, phone).status == REJECTED
    assert site.login("ada", PASSWORD).status == OK  # no second factor left


def test_the_command_line_sets_the_party_and_clears_a_flag(
    dsn: str, schema: str, phone: Authenticator
) -> None:
    from click.testing import CliRunner

    from pgusers.cli import main

    from .support import FAST_HASHER

    def opened() -> pgusers.UserSpace:  # the command closes the one it used
        return pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)

    runner = CliRunner()
    base = ["--dsn", dsn, "--schema", schema]
    bad = runner.invoke(main, [*base, "passkey", "setup", "example.com", "Ex", "https://evil.test"])
    assert bad.exit_code == 2 and "not on example.com" in bad.stderr
    done = runner.invoke(main, [*base, "passkey", "setup", "example.com", "Example", ORIGIN])
    assert done.exit_code == 0, done.output
    with opened() as usp:
        assert usp.settings().webauthn_origins == [ORIGIN]
        ada = usp.create_user("ada", PASSWORD, "ada@example.com")
        factor_id = register(usp, phone)
        assert sign_in(usp, phone, sign_count=5).status == OK
        assert sign_in(usp, phone, sign_count=2).status == REJECTED  # flagged
    listed = runner.invoke(main, [*base, "mfa", "list", "ada"])
    assert "passkey" in listed.stdout and "FLAGGED as cloned" in listed.stdout
    cleared = runner.invoke(main, [*base, "passkey", "clear-flag", "ada", factor_id])
    assert cleared.exit_code == 0, cleared.output
    again = runner.invoke(main, [*base, "passkey", "clear-flag", "ada", factor_id])
    assert again.exit_code == 1 and "no flagged passkey" in again.stderr
    # An id is URL-safe base64, so one in 64 starts with "-": it is an id, not an option.
    dashed = runner.invoke(main, [*base, "passkey", "clear-flag", "ada", "-v" + factor_id[2:]])
    assert dashed.exit_code == 1 and "no flagged passkey '-v" in dashed.stderr
    with opened() as usp:
        assert not usp.factors(ada).factors[0].cloned
