"""Signing in through other sites, on both APIs, against providers served on the loopback
interface (tests/identity_providers.py): the linking rules, second factors, linking
and unlinking, and every attack on the protocol the issue names, each refused with
an event and no session."""

import json
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import pgusers
from pgusers import (
    DISABLED,
    EXPIRED,
    LAST_METHOD,
    LINK_REQUIRED,
    MFA_REQUIRED,
    NOT_FOUND,
    OK,
    REJECTED,
)

from .identity_providers import (
    CLIENT_ID,
    CLIENT_SECRET,
    FakeGitHub,
    ScriptedProvider,
    add_provider,
    follow,
    with_param,
)
from .support import FAST_HASHER, Clock, served

pytest.importorskip("authlib")
pyotp = pytest.importorskip("pyotp")
from joserfc.jwk import ECKey, RSAKey  # noqa: E402

KEY = "a-test-secret-key-long-enough-for-aes"
REDIRECT = "https://app.example.com/auth/callback"
PASSWORD = "s3cret-pw"
ALICE = {
    "sub": "alice-at-acme",
    "email": "alice@example.com",
    "email_verified": True,
    "preferred_username": "alice",
    "name": "Alice Liddell",
}


@pytest.fixture(scope="module")
def served_provider() -> Iterator[ScriptedProvider]:
    provider = ScriptedProvider()
    with served(provider.app()) as base:
        provider.base = base
        yield provider


@pytest.fixture
def idp(served_provider: ScriptedProvider) -> ScriptedProvider:
    """The scripted provider, with Alice signing in and nothing bent."""
    served_provider.person = dict(ALICE)
    served_provider.bend_claims = {}
    served_provider.bend_header = {}
    served_provider.sign_with = None
    served_provider.unsigned = False
    served_provider.tenant = None
    served_provider.client_auth = "client_secret_basic"
    return served_provider


@pytest.fixture
def usp(open_userspace: Any, dsn: str, schema: str) -> Iterator[Any]:
    space = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY)
    yield space
    space.close()


@pytest.fixture
def site(usp: Any, idp: ScriptedProvider) -> Any:
    assert add_provider(usp, idp, keep_claims=["name"]) == OK
    return usp


def sign_in(
    usp: Any, provider: str = "acme", *, link_to_key: str | None = None, **finish: Any
) -> pgusers.LoginOutcome:
    begun = usp.begin_external_login(provider, REDIRECT, link_to_key=link_to_key)
    callback = follow(begun.authorization_url)
    outcome: pgusers.LoginOutcome = usp.finish_external_login(begun.state, callback, **finish)
    return outcome


def reasons(usp: Any) -> list[str]:
    return [str(e.detail.get("reason")) for e in usp.events(kinds=["login.failed"])]


def no_session_opened(usp: Any) -> bool:
    return not list(usp.events(kinds=["login.succeeded"]))


def refused(usp: Any, outcome: pgusers.LoginOutcome, reason: str) -> None:
    assert outcome.status == REJECTED and outcome.key == ""
    assert any(reason in text for text in reasons(usp)), reasons(usp)
    assert no_session_opened(usp)


# -- providers ------------------------------------------------------------------------


def test_a_provider_is_a_setting_and_its_secret_is_sealed(
    site: Any, idp: ScriptedProvider, sql_conn: Any, schema: str
) -> None:
    (acme,) = site.identity_providers()
    assert acme.name == "acme" and acme.kind == "oidc" and acme.client_id == CLIENT_ID
    assert acme.scopes == ("openid", "email", "profile") and acme.identities == 0
    assert not acme.link_by_verified_email and not acme.trusted_for_mfa and acme.allow_signup
    stored = sql_conn.execute(f"SELECT client_secret FROM {schema}.identity_providers").fetchone()[
        0
    ]
    assert CLIENT_SECRET not in stored
    assert [e.detail["provider"] for e in site.events(kinds=["provider.added"])] == ["acme"]
    # Adding it again replaces it.
    site.add_identity_provider(
        "acme", kind="oidc", client_id="other", client_secret="x",
        discovery_url=idp.discovery_url, trusted_for_mfa=True,
    )  # fmt: skip
    (acme,) = site.identity_providers()
    assert acme.client_id == "other" and acme.trusted_for_mfa
    assert site.remove_identity_provider("acme") == OK
    assert site.remove_identity_provider("acme") == NOT_FOUND
    assert site.identity_providers() == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"name": "Acme"}, "lower-case"),
        ({"name": "a b"}, "lower-case"),
        ({"kind": "saml"}, "kind must be one of"),
        ({"kind": "oidc", "discovery_url": None}, "needs its discovery_url"),
        ({"discovery_url": "http://idp.example.com/.well-known/x"}, "https"),
        ({"discovery_url": "https://user@idp.example.com/x"}, "no user name"),
        ({"client_secret": ""}, "must not be empty"),
        ({"client_id": "a\nb"}, "printable"),
        ({"scopes": "openid email"}, "list of strings"),
        ({"scopes": ["a b"]}, "is not a scope"),
        ({"keep_claims": ["x y"]}, "claim's name"),
        ({"trusted_for_mfa": "yes"}, "trusted_for_mfa"),
    ],
)
def test_a_bad_provider_is_refused_and_nothing_is_stored(
    usp: Any, idp: ScriptedProvider, arguments: dict[str, Any], message: str
) -> None:
    given: dict[str, Any] = {
        "name": "acme", "kind": "oidc", "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "discovery_url": idp.discovery_url, **arguments,
    }  # fmt: skip
    with pytest.raises(pgusers.BadCallError, match=message):
        usp.add_identity_provider(given.pop("name"), **given)
    assert usp.identity_providers() == []


def test_a_discovery_url_that_does_not_answer_is_refused(usp: Any, idp: ScriptedProvider) -> None:
    with pytest.raises(pgusers.BadCallError, match="could not be read"):
        usp.add_identity_provider(
            "acme", kind="oidc", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            discovery_url=idp.base + "/nowhere",
        )  # fmt: skip
    assert usp.identity_providers() == []


def test_providers_need_the_secret_key(open_userspace: Any, dsn: str, schema: str) -> None:
    space = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    try:
        with pytest.raises(pgusers.BadCallError, match="secret_key"):
            space.add_identity_provider("google", kind="google", client_id="x", client_secret="y")
    finally:
        space.close()


# -- the linking rules --------------------------------------------------------------


def test_a_new_person_with_a_verified_email_becomes_a_user_without_a_password(site: Any) -> None:
    outcome = sign_in(site, source="192.0.2.7", user_agent="Firefox")
    assert outcome.status == OK and outcome.key
    info = site.check_session(outcome.key)
    assert info.username == "alice" and info.auth_methods == ("external:acme",)
    found = site.find_user(userid=outcome.userid)
    assert found["email"] == "alice@example.com" and found["email_verified"]
    (identity,) = site.identities(outcome.userid)
    assert (identity.provider, identity.subject) == ("acme", "alice-at-acme")
    assert identity.email_verified and identity.claims == {"name": "Alice Liddell"}
    kinds = [e.kind for e in site.events(userid=outcome.userid)]
    assert {"user.created", "identity.linked", "login.succeeded"} <= set(kinds)
    # No password was made: none signs in.
    assert site.login("alice", "!").status == REJECTED
    assert site.validate_user("alice", "!") == ("", False, None)


def test_a_token_endpoint_that_takes_the_secret_in_the_form_only_gets_it_there(
    site: Any, idp: ScriptedProvider
) -> None:
    idp.client_auth = "client_secret_post"
    add_provider(site, idp, "form-only")
    assert sign_in(site, "form-only").status == OK


def test_a_known_identity_signs_in_its_user_again(site: Any) -> None:
    first = sign_in(site)
    second = sign_in(site)
    assert second.status == OK and second.userid == first.userid
    assert len(list(site.all_users())) == 1
    (identity,) = site.identities(first.userid)
    assert identity.last_used_at is not None


def test_a_new_username_is_made_unique(site: Any) -> None:
    site.create_user("alice", PASSWORD, "someone.else@example.com")
    outcome = sign_in(site)
    assert outcome.status == OK
    assert site.find_user(userid=outcome.userid)["username"] == "alice-2"


def test_an_unverified_email_matching_an_account_links_nothing(
    site: Any, idp: ScriptedProvider
) -> None:
    add_provider(site, idp, link_by_verified_email=True)
    victim = site.create_user("victim", PASSWORD, "alice@example.com")
    _verify(site, victim)
    idp.person["email_verified"] = False
    outcome = sign_in(site)
    assert outcome.status == LINK_REQUIRED and outcome.key == ""
    assert site.identities(victim) == []
    assert "no verified email" in reasons(site)
    assert no_session_opened(site)


def test_a_verified_email_links_only_when_the_provider_may_and_the_account_verified_it(
    site: Any, idp: ScriptedProvider
) -> None:
    ada = site.create_user("ada", PASSWORD, "alice@example.com")
    # The provider is not configured to link by email: refused, the account untouched.
    assert sign_in(site).status == LINK_REQUIRED
    add_provider(site, idp, link_by_verified_email=True)
    # The address is not verified here: still refused.
    assert sign_in(site).status == LINK_REQUIRED
    assert site.identities(ada) == []
    _verify(site, ada)
    outcome = sign_in(site)
    assert outcome.status == OK and outcome.userid == ada
    assert [i.provider for i in site.identities(ada)] == ["acme"]
    (linked,) = site.events(kinds=["identity.linked"])
    assert linked.detail == {"provider": "acme", "how": "verified email"}


def test_sign_up_can_be_closed(site: Any, idp: ScriptedProvider) -> None:
    add_provider(site, idp, allow_signup=False)
    assert sign_in(site).status == LINK_REQUIRED
    assert list(site.all_users()) == []


def test_two_providers_subjects_colliding_are_two_people(
    site: Any, served_provider: ScriptedProvider, idp: ScriptedProvider
) -> None:
    add_provider(site, idp, "other")
    alice = sign_in(site, "acme")
    idp.person = {**ALICE, "email": "mallory@example.com", "preferred_username": "mallory"}
    mallory = sign_in(site, "other")
    assert mallory.status == OK and mallory.userid != alice.userid
    assert site.check_session(mallory.key).username == "mallory"


def test_a_disabled_user_is_refused(site: Any) -> None:
    alice = sign_in(site)
    site.disable_user(alice.userid)
    assert sign_in(site).status == DISABLED


# -- second factors -------------------------------------------------------------------


def test_a_second_factor_applies_unless_the_provider_is_trusted_for_it(
    site: Any, idp: ScriptedProvider
) -> None:
    alice = sign_in(site)
    enrollment = site.begin_totp(alice.userid)
    totp = pyotp.TOTP(enrollment.secret)
    assert site.confirm_totp(alice.userid, enrollment.factor_id, totp.now()) == OK
    pending = sign_in(site)
    assert pending.status == MFA_REQUIRED and pending.key == "" and pending.ticket
    assert pending.factors == ("totp",)
    done = site.complete_login(
        pending.ticket, recovery_code=site.new_recovery_codes(alice.userid)[0]
    )
    assert done.status == OK
    assert site.check_session(done.key).auth_methods == ("external:acme", "recovery_code")
    add_provider(site, idp, trusted_for_mfa=True)
    trusted = sign_in(site)
    assert trusted.status == OK
    assert site.check_session(trusted.key).auth_methods == ("external:acme",)


# -- linking and unlinking ------------------------------------------------------------


def test_a_signed_in_user_links_a_provider_after_a_recent_proof(
    site: Any, idp: ScriptedProvider, clock: Clock
) -> None:
    ada = site.create_user("ada", PASSWORD, "ada@example.com")
    key = site.login("ada", PASSWORD).key
    linked = sign_in(site, link_to_key=key)
    assert linked.status == OK and linked.key == "" and linked.userid == ada
    assert [i.subject for i in site.identities(ada)] == ["alice-at-acme"]
    # The provider's account now signs Ada in.
    assert sign_in(site).userid == ada
    clock.advance(601)
    with pytest.raises(pgusers.BadCallError, match="reauthenticate"):
        site.begin_external_login("acme", REDIRECT, link_to_key=key)
    with pytest.raises(pgusers.BadCallError, match="no live session"):
        site.begin_external_login("acme", REDIRECT, link_to_key="x" * 43)


def test_an_account_linked_to_someone_else_is_not_taken(site: Any) -> None:
    alice = sign_in(site)
    site.create_user("ada", PASSWORD, "ada@example.com")
    key = site.login("ada", PASSWORD).key
    outcome = sign_in(site, link_to_key=key)
    assert outcome.status == REJECTED
    assert "already linked" in reasons(site)
    assert sign_in(site).userid == alice.userid


def test_unlinking_needs_a_recent_proof_and_keeps_the_last_way_in(site: Any, clock: Clock) -> None:
    alice = sign_in(site)
    assert site.unlink_identity(alice.key, "acme") == LAST_METHOD
    assert [i.provider for i in site.identities(alice.userid)] == ["acme"]
    assert site.remove_identity(alice.userid, "acme") == LAST_METHOD
    with pytest.raises(pgusers.BadCallError, match="only through this provider"):
        site.remove_identity_provider("acme")
    # With a password, the identity may go.
    assert site.change_password(alice.userid, "a-new-password") == OK
    clock.advance(601)
    assert site.unlink_identity(alice.key, "acme") == REJECTED  # not recent
    fresh = site.login("alice", "a-new-password").key
    assert site.unlink_identity(fresh, "acme") == OK
    assert site.unlink_identity(fresh, "acme") == NOT_FOUND
    assert site.identities(alice.userid) == []
    (event,) = site.events(kinds=["identity.unlinked"])
    assert event.detail == {"provider": "acme"}


def test_a_passkey_is_a_way_in_and_the_last_one_stays(site: Any) -> None:
    from .authenticator import Authenticator

    site.set_webauthn("example.com", "Example", ["https://app.example.com"])
    alice = sign_in(site)
    phone = Authenticator("https://app.example.com")
    begun = site.begin_passkey_registration(alice.key, label="phone")
    answer = phone.create(begun.options)
    factor_id = site.finish_passkey_registration(alice.key, begun.challenge_id, answer)
    assert site.unlink_identity(alice.key, "acme") == OK  # the passkey remains
    assert site.remove_factor(alice.userid, factor_id) == LAST_METHOD
    assert [f.factor_id for f in site.factors(alice.userid).factors] == [factor_id]


def test_removing_every_factor_keeps_a_passkey_only_user_s_way_in(
    site: Any, dsn: str, schema: str
) -> None:
    from click.testing import CliRunner

    from pgusers.cli import main

    from .authenticator import Authenticator

    site.set_webauthn("example.com", "Example", ["https://app.example.com"])
    alice = sign_in(site)
    phone = Authenticator("https://app.example.com")
    begun = site.begin_passkey_registration(alice.key, label="phone")
    site.finish_passkey_registration(alice.key, begun.challenge_id, phone.create(begun.options))
    assert site.unlink_identity(alice.key, "acme") == OK
    reset = CliRunner().invoke(
        main,
        ["--dsn", dsn, "--schema", schema, "mfa", "reset", "--yes", "alice"],
        env={"PGUSERS_SECRET_KEY": KEY},
    )
    assert reset.exit_code == 2 and "only with a passkey" in reset.stderr
    with pgusers.UserSpace(
        conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY
    ) as usp:  # the command closed the userspace it shared with the test
        assert alice.userid is not None
        assert len(usp.factors(alice.userid).factors) == 1


def test_two_removals_at_once_cannot_leave_no_way_in(
    site: Any, idp: ScriptedProvider, server_dsn: str, schema: str
) -> None:
    import psycopg

    add_provider(site, idp, "other")
    alice = sign_in(site, "acme")
    assert sign_in(site, "other", link_to_key=alice.key).status == OK
    results: list[Any] = []
    with psycopg.connect(server_dsn) as other:  # removes one, and holds its transaction
        other.execute(f"DELETE FROM {schema}.identities WHERE provider = 'other'")
        unlinking = threading.Thread(
            target=lambda: results.append(site.unlink_identity(alice.key, "acme"))
        )
        unlinking.start()
        unlinking.join(1.0)
        assert unlinking.is_alive()  # it waits for the other removal to end
        other.commit()
    unlinking.join()
    assert results == [LAST_METHOD]
    assert [i.provider for i in site.identities(alice.userid)] == ["acme"]


def test_deleting_a_user_takes_its_identities_along(site: Any) -> None:
    assert sign_in(site).status == OK
    assert site.delete_user("alice") == OK
    assert site.identity_providers()[0].identities == 0


# -- the provider's tokens, and the secret key ------------------------------------


def test_tokens_are_kept_only_when_asked_sealed_and_refreshed(
    site: Any, idp: ScriptedProvider, sql_conn: Any, schema: str, clock: Clock
) -> None:
    alice = sign_in(site)
    assert site.provider_tokens(alice.userid, "acme") is None
    add_provider(site, idp, keep_tokens=True)
    idp.token_lifetime = 60
    sign_in(site)
    kept = site.provider_tokens(alice.userid, "acme")
    assert kept["access_token"].startswith("access-") and kept["refresh_token"]
    stored = sql_conn.execute(f"SELECT tokens FROM {schema}.identities").fetchone()[0]
    assert kept["access_token"] not in stored and kept["refresh_token"] not in stored
    assert site.provider_tokens(alice.userid, "acme") == kept  # still fresh
    clock.advance(120)  # expired: refreshed, and the refresh token kept
    renewed = site.provider_tokens(alice.userid, "acme")
    assert renewed["access_token"] != kept["access_token"]
    assert renewed["refresh_token"] == kept["refresh_token"]
    assert site.provider_tokens(alice.userid, "acme")["access_token"] == renewed["access_token"]
    idp.token_lifetime = 3600


def test_rotating_the_secret_key_seals_the_providers_secrets_again(
    dsn: str, schema: str, idp: ScriptedProvider
) -> None:
    from click.testing import CliRunner

    from pgusers.cli import main

    def opened(key: str) -> pgusers.UserSpace:
        return pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=key)

    with opened(KEY) as old:
        add_provider(old, idp, keep_tokens=True)
        alice = sign_in(old)
    new_key = "another-test-secret-key-as-long"
    rotated = CliRunner().invoke(
        main,
        ["--dsn", dsn, "--schema", schema, "rotate-secret-key"],
        env={"PGUSERS_SECRET_KEY": f"{new_key} {KEY}"},
    )
    # The client secret and the kept tokens.
    assert rotated.stdout == "resealed 2 secrets under the current key\n", rotated.output
    with opened(new_key) as new:
        assert alice.userid is not None
        assert (new.provider_tokens(alice.userid, "acme") or {})["access_token"]
        assert sign_in(new).userid == alice.userid


def test_the_command_line_adds_lists_and_removes(
    dsn: str, schema: str, idp: ScriptedProvider
) -> None:
    from click.testing import CliRunner

    from pgusers.cli import main

    def cli(*args: str, stdin: str | None = None) -> Any:
        return CliRunner().invoke(
            main, ["--dsn", dsn, "--schema", schema, *args], input=stdin,
            env={"PGUSERS_SECRET_KEY": KEY},
        )  # fmt: skip

    added = cli(
        "provider", "add", "acme", "--kind", "oidc", "--client-id", CLIENT_ID,
        "--client-secret-stdin", "--discovery-url", idp.discovery_url, "--keep-claim", "name",
        stdin=CLIENT_SECRET + "\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    no_secret = cli("provider", "add", "x", "--kind", "github", "--client-id", "i")
    assert no_secret.exit_code == 2 and "--client-secret-stdin" in no_secret.stderr
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY) as usp:
        alice = sign_in(usp)
    listed = cli("provider", "list")
    assert "acme" in listed.stdout and CLIENT_SECRET not in listed.stdout
    assert listed.stdout.splitlines()[1].split()[-1] == "1"  # one user linked
    identities = cli("identity", "list", "alice", "--json")
    assert json.loads(identities.stdout)[0]["subject"] == "alice-at-acme"
    last = cli("identity", "remove", "--yes", "alice", "acme")
    assert last.exit_code == 2 and "last way" in last.stderr
    refused_removal = cli("provider", "remove", "--yes", "acme")
    assert refused_removal.exit_code == 2 and "only through this provider" in refused_removal.stderr
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        assert alice.userid is not None
        usp.change_password(alice.userid, "now-a-password")
    assert cli("identity", "remove", "--yes", "alice", "acme").exit_code == 0
    assert cli("provider", "remove", "--yes", "acme").exit_code == 0
    assert cli("provider", "remove", "--yes", "acme").exit_code == 1
    assert cli("provider", "list").stdout == "no identity providers\n"


# -- the attacks: each refused, with an event, and no session ------------------------


def test_a_state_that_does_not_match_the_callback_is_refused(site: Any) -> None:
    begun = site.begin_external_login("acme", REDIRECT)
    callback = follow(begun.authorization_url)
    forged = with_param(callback, "state", "an-attacker-s-own-state")
    refused(site, site.finish_external_login(begun.state, forged), "state mismatch")
    # The sign-in is spent: the genuine callback cannot be used after it.
    refused(site, site.finish_external_login(begun.state, callback), "state unknown or used")


def test_a_state_is_used_once(site: Any) -> None:
    begun = site.begin_external_login("acme", REDIRECT)
    callback = follow(begun.authorization_url)
    assert site.finish_external_login(begun.state, callback).status == OK
    again = site.finish_external_login(begun.state, callback)
    assert again.status == REJECTED and "state unknown or used" in reasons(site)


def test_a_code_is_used_once(site: Any) -> None:
    first = site.begin_external_login("acme", REDIRECT)
    used = follow(first.authorization_url)
    assert site.finish_external_login(first.state, used).status == OK
    second = site.begin_external_login("acme", REDIRECT)
    replayed = with_param(used, "state", second.state)  # the old code under a new state
    outcome = site.finish_external_login(second.state, replayed)
    assert outcome.status == REJECTED and "refused the code" in " ".join(reasons(site))


def test_a_nonce_that_differs_is_refused(site: Any, idp: ScriptedProvider) -> None:
    idp.bend_claims = {"nonce": "not-the-one-sent"}
    refused(site, sign_in(site), "nonce")


def test_a_replayed_id_token_is_refused(site: Any, idp: ScriptedProvider) -> None:
    # An ID token from an earlier sign-in carries that sign-in's nonce.
    begun = site.begin_external_login("acme", REDIRECT)
    old_nonce = dict(_query(begun.authorization_url))["nonce"]
    idp.bend_claims = {"nonce": old_nonce}
    refused(site, sign_in(site), "nonce")
    idp.bend_claims = {"nonce": None}
    refused(site, sign_in(site), "nonce")


def test_a_wrong_issuer_is_refused(site: Any, idp: ScriptedProvider) -> None:
    idp.bend_claims = {"iss": "https://evil.example.com"}
    refused(site, sign_in(site), "iss")


def test_another_audience_is_refused(site: Any, idp: ScriptedProvider) -> None:
    idp.bend_claims = {"aud": "another-client", "azp": CLIENT_ID}
    refused(site, sign_in(site), "aud")


def test_an_expired_token_is_refused(site: Any, idp: ScriptedProvider) -> None:
    idp.bend_claims = {"exp": 1_000_000_000, "iat": 999_999_000}
    refused(site, sign_in(site), "expired")


def test_an_unsigned_token_is_refused(site: Any, idp: ScriptedProvider) -> None:
    idp.unsigned = True
    refused(site, sign_in(site), "ID token")


def test_a_key_injected_through_the_token_header_is_not_trusted(
    site: Any, idp: ScriptedProvider
) -> None:
    # Signed with the attacker's key, which the header carries, under the provider's
    # key id: the provider's published key is the one tried, and it does not verify.
    attacker = ECKey.generate_key("P-256", parameters={"kid": "main"})
    idp.sign_with = attacker
    idp.bend_header = {"alg": "ES256", "jwk": attacker.as_dict(private=False)}
    refused(site, sign_in(site), "ID token")
    # Under a key id of its own: a key the provider does not publish.
    idp.sign_with = RSAKey.generate_key(2048, parameters={"kid": "attacker"})
    idp.bend_header = {"kid": "attacker"}
    refused(site, sign_in(site), "does not publish")


def test_a_multi_tenant_issuer_takes_the_token_s_own_tenant(
    site: Any, idp: ScriptedProvider
) -> None:
    # As Microsoft's "common" endpoint: the document's issuer names {tenantid}.
    idp.tenant = "9188040d-6c67-4c5b-b112-36a304b66dad"
    add_provider(site, idp, "tenants")
    # Another tenant's issuer, and no tenant at all: refused.
    idp.bend_claims = {"iss": f"{idp.base}/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"}
    refused(site, sign_in(site, "tenants"), "iss")
    idp.bend_claims = {"tid": None}
    refused(site, sign_in(site, "tenants"), "no tenant")
    idp.bend_claims = {}
    assert sign_in(site, "tenants").status == OK


def test_a_callback_at_another_redirect_uri_is_refused(site: Any) -> None:
    begun = site.begin_external_login("acme", REDIRECT)
    callback = follow(begun.authorization_url)
    elsewhere = callback.replace(REDIRECT, "https://evil.example.com/auth/callback")
    refused(site, site.finish_external_login(begun.state, elsewhere), "redirect URI differs")


def test_an_expired_sign_in_is_refused(site: Any, clock: Clock) -> None:
    begun = site.begin_external_login("acme", REDIRECT)
    callback = follow(begun.authorization_url)
    clock.advance(601)
    outcome = site.finish_external_login(begun.state, callback)
    assert outcome.status == EXPIRED and "state expired" in reasons(site)
    assert no_session_opened(site)


def test_a_provider_s_error_is_refused(site: Any) -> None:
    begun = site.begin_external_login("acme", REDIRECT)
    params = {"state": begun.state, "error": "access_denied"}
    refused(site, site.finish_external_login(begun.state, params), "access_denied")


def test_a_blank_parameter_the_sign_in_does_not_read_is_no_refusal(site: Any) -> None:
    # Providers add parameters of their own to the callback, some of them blank.
    begun = site.begin_external_login("acme", REDIRECT)
    callback = dict(_query(follow(begun.authorization_url)))
    outcome = site.finish_external_login(begun.state, {**callback, "session_state": ""})
    assert outcome.status == OK


@pytest.mark.parametrize(
    ("state", "callback", "message"),
    [
        (None, "https://app.example.com/cb?code=x", "state must be a str"),
        ("s", 42, "give the callback"),
        ("s", "not a url", "whole URL"),
        ("s", {"code": 1}, "strings"),
        ("s\x00", "https://app.example.com/cb?code=x", "NUL"),
        ("s", "https://app.example.com/cb?code=" + "x" * 9000, "limit"),
    ],
)
def test_hostile_callbacks_are_refused_before_the_database(
    site: Any, state: Any, callback: Any, message: str
) -> None:
    with pytest.raises(pgusers.BadCallError, match=message):
        site.finish_external_login(state, callback)


def test_too_many_sign_ins_from_one_source_are_refused(site: Any) -> None:
    for _ in range(20):
        site.begin_external_login("acme", REDIRECT, source="192.0.2.9")
    with pytest.raises(pgusers.BadCallError, match="too many sign-ins"):
        site.begin_external_login("acme", REDIRECT, source="192.0.2.9")
    site.begin_external_login("acme", REDIRECT, source="192.0.2.10")


# -- GitHub, and a provider that is none of ours -------------------------------------


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    with served(fake.app()) as base:
        fake.base = base
        yield fake


def test_github_signs_in_with_its_verified_primary_address(usp: Any, github: FakeGitHub) -> None:
    github.user = {"id": 4242, "login": "octo", "name": "Octo Cat"}
    github.emails = [
        {"email": "octo@example.com", "primary": True, "verified": True},
        {"email": "other@example.com", "primary": False, "verified": True},
    ]
    usp.add_identity_provider(
        "github", kind="github", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        discovery_url=github.base,
    )  # fmt: skip
    outcome = sign_in(usp, "github")
    assert outcome.status == OK
    assert usp.check_session(outcome.key).username == "octo"
    assert usp.identities(outcome.userid)[0].subject == "4242"
    github.user = {"id": 4343, "login": "unverified"}
    github.emails = [{"email": "un@example.com", "primary": True, "verified": False}]
    assert sign_in(usp, "github").status == LINK_REQUIRED


# The package (0.3, the line for Python 3.11) still uses authlib's older JOSE module
# and server hooks, which warn as they work: in its server's thread, not in pgusers.
@pytest.mark.filterwarnings("ignore::authlib.deprecate.AuthlibDeprecationWarning")
@pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")
def test_the_flow_works_with_an_independent_provider(usp: Any) -> None:
    with warnings.catch_warnings():  # it imports authlib's older JOSE module, which warns
        import authlib.deprecate  # which turns its warnings on when first imported

        warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
        mock = pytest.importorskip("oidc_provider_mock")
    person = mock.User(sub="carol", claims={"email": "carol@example.com", "email_verified": True})
    with mock.run_server_in_thread(require_nonce=True, user_claims=[person]) as server:
        base = f"http://localhost:{server.server_port}"
        usp.add_identity_provider(
            "mock", kind="oidc", client_id="pgusers", client_secret="anything",
            discovery_url=f"{base}/.well-known/openid-configuration",
        )  # fmt: skip
        begun = usp.begin_external_login("mock", REDIRECT)
        callback = follow(begun.authorization_url, form={"sub": "carol"})
        outcome = usp.finish_external_login(begun.state, callback)
    assert outcome.status == OK, reasons(usp)
    assert usp.find_user(userid=outcome.userid)["email"] == "carol@example.com"


def _query(url: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl, urlsplit

    return parse_qsl(urlsplit(url).query)


def _verify(usp: Any, userid: int) -> None:
    token = usp.issue_token(userid, "verify_email")
    assert usp.verify_email(token) == OK
