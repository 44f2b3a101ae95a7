"""The WebAuthn relying party: the options a browser is given and the checks of what
it answers, through py_webauthn (the ``mfa`` extra). The statements live with the
operations (:mod:`pgusers._core.passkeys`, :mod:`pgusers._core.factors`); this
module holds no state and reaches no database.

What a passkey leaves in the database is public: the credential's id, its public
key, its signature counter and transports. A challenge is 32 random bytes, used once.
User verification (a PIN, a fingerprint) is required, so that a passkey is a whole
login on its own; resident (discoverable) credentials are preferred, so that one
can sign in without typing a name.
"""

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from pgusers._core import checks
from pgusers._core.sealing import NEEDS_EXTRA
from pgusers._errors import BadCallError

CHALLENGE_LIFETIME: Final = 300.0
"""Seconds a challenge waits for its answer."""
CHALLENGE_BYTES: Final = 32
TIMEOUT_MS: Final = 300_000
"""What the options tell the browser it may take (the challenge's lifetime)."""
MAX_CREDENTIAL_JSON: Final = 64 * 1024
"""Characters of a browser's answer at most (a passkey's is about 1 KB)."""
MAX_ORIGINS: Final = 20
MAX_RP_NAME: Final = 100


def library() -> Any:
    try:
        import webauthn  # noqa: PLC0415 - an extra's library, loaded when a passkey is used
    except ImportError:  # pragma: no cover - the mfa extra is missing
        raise BadCallError(NEEDS_EXTRA) from None
    return webauthn


@dataclass(frozen=True, slots=True)
class Party:
    """The relying party as stored in the settings: its id (a domain), its name (what
    the browser shows), and the origins its pages are served from."""

    rp_id: str
    name: str
    origins: tuple[str, ...]


NOT_SET: Final = (
    "passkeys need the relying party first: set_webauthn(rp_id, rp_name, origins) "
    '(pgusers passkey setup), e.g. set_webauthn("example.com", "Example", '
    '["https://example.com"])'
)


def party(rp_id: str | None, name: str | None, origins: list[str] | None) -> Party:
    """The stored relying party, or a refusal that says how to set one."""
    if not rp_id or not name or not origins:
        raise BadCallError(NOT_SET)
    return Party(rp_id, name, tuple(origins))


def checked_party(rp_id: object, name: object, origins: object) -> Party:
    """A relying party as ``set_webauthn`` takes it: an id that is a host name, a
    name, and origins (``https://host[:port]``, or ``http://localhost`` for
    development) whose hosts are the id or below it, as browsers require."""
    rp = checks.text(rp_id, "rp_id", 253).lower()
    if not rp or not all(
        part.isascii() and part.replace("-", "").isalnum() for part in rp.split(".")
    ):
        raise BadCallError("rp_id must be a host name, such as example.com")
    title = checks.label(name, "rp_name", MAX_RP_NAME)
    if isinstance(origins, str) or not hasattr(origins, "__iter__"):
        raise BadCallError("origins must be a list of origins, such as ['https://example.com']")
    listed = []
    for origin in list(origins)[: MAX_ORIGINS + 1]:
        text = checks.text(origin, "origin", 300)
        scheme, _, rest = text.partition("://")
        host = rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest
        local = host in ("localhost", "127.0.0.1")
        if scheme not in ("https", "http") or (scheme == "http" and not local) or "/" in rest:
            raise BadCallError(
                f"origin {text!r} must be https://host[:port] (http only for localhost)"
            )
        if host != rp and not host.endswith("." + rp):
            raise BadCallError(f"origin {text!r} is not on {rp} or below it")
        listed.append(text)
    if not listed or len(listed) > MAX_ORIGINS:
        raise BadCallError(f"give between 1 and {MAX_ORIGINS} origins")
    return Party(rp, title, tuple(listed))


def new_challenge() -> tuple[str, bytes]:
    """A challenge's id (what the client sends back) and its bytes."""
    return secrets.token_urlsafe(16), secrets.token_bytes(CHALLENGE_BYTES)


def registration_options(
    rp: Party,
    challenge: bytes,
    user_handle: bytes,
    username: str,
    excluded: list[bytes],
) -> str:
    """The creation options as JSON, the shape ``PublicKeyCredential.
    parseCreationOptionsFromJSON`` takes."""
    webauthn = library()
    from webauthn.helpers import structs  # noqa: PLC0415

    options = webauthn.generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.name,
        user_id=user_handle,
        user_name=username,
        user_display_name=username,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        authenticator_selection=structs.AuthenticatorSelectionCriteria(
            resident_key=structs.ResidentKeyRequirement.PREFERRED,
            user_verification=structs.UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[structs.PublicKeyCredentialDescriptor(id=c) for c in excluded],
    )
    return str(webauthn.options_to_json(options))


def authentication_options(rp: Party, challenge: bytes, allowed: list[bytes]) -> str:
    """The request options as JSON (``parseRequestOptionsFromJSON``): for a login
    without a name, no credential listed, so that none is revealed."""
    webauthn = library()
    from webauthn.helpers import structs  # noqa: PLC0415

    options = webauthn.generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        allow_credentials=[structs.PublicKeyCredentialDescriptor(id=c) for c in allowed],
        user_verification=structs.UserVerificationRequirement.REQUIRED,
    )
    return str(webauthn.options_to_json(options))


def credential_json(value: object, what: str = "credential") -> dict[str, Any]:
    """A browser's answer (``PublicKeyCredential.toJSON()``), as text or a dict."""
    if isinstance(value, dict):
        try:
            value = json.dumps(value)
        except (TypeError, ValueError, RecursionError):
            raise BadCallError(f"{what} must be the JSON of a PublicKeyCredential") from None
    text = checks.text(value, what, MAX_CREDENTIAL_JSON)
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        raise BadCallError(f"{what} must be the JSON of a PublicKeyCredential") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("rawId", parsed.get("id")), str):
        raise BadCallError(f"{what} must be the JSON of a PublicKeyCredential")
    return parsed


def credential_id(credential: dict[str, Any]) -> bytes:
    """The id of the credential an answer names (empty when it is not base64url)."""
    try:
        raw: bytes = library().base64url_to_bytes(credential.get("rawId") or credential["id"])
    except (ValueError, TypeError):
        return b""
    return raw


@dataclass(frozen=True, slots=True)
class Registered:
    credential_id: bytes
    public_key: bytes
    sign_count: int
    transports: list[str]


def verify_registration(
    rp: Party, challenge: bytes, credential: dict[str, Any]
) -> Registered | str:
    """The new credential, or why it is refused."""
    webauthn = library()
    verified = _verified(
        lambda: webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            require_user_verification=True,
        )
    )
    if isinstance(verified, str):
        return verified
    response = credential.get("response")
    transports = response.get("transports") if isinstance(response, dict) else None
    kept = [str(t)[:16] for t in transports[:8]] if isinstance(transports, list) else []
    return Registered(
        verified.credential_id, verified.credential_public_key, verified.sign_count, kept
    )


def verify_assertion(
    rp: Party, challenge: bytes, credential: dict[str, Any], public_key: bytes
) -> int | str:
    """The authenticator's new signature count, or why the answer is refused. The
    count is compared by the caller, after the signature is known to be good: a
    forged answer with a low count must not flag a good credential."""
    webauthn = library()
    verified = _verified(
        lambda: webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            credential_public_key=public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    )
    return verified if isinstance(verified, str) else int(verified.new_sign_count)


def went_backwards(stored: int, new: int) -> bool:
    """Whether a signature count says the credential was copied: it must grow, unless
    the authenticator keeps none (both 0)."""
    return (stored > 0 or new > 0) and new <= stored


def _verified(check: Callable[[], Any]) -> Any:
    """What ``check`` (one of the library's verifications) returns, or why it refused,
    in a few words for the event (never the answer itself): the library's message, or
    "malformed answer" for whatever else a malformed answer makes it raise."""
    from webauthn.helpers.exceptions import WebAuthnException  # noqa: PLC0415

    try:
        return check()
    except WebAuthnException as refused:
        return (str(refused).split("\n", 1)[0] or type(refused).__name__)[:120]
    except Exception:  # a malformed answer can make the parsing raise anything
        return "malformed answer"
