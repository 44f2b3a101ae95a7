"""A software authenticator for the tests: an ES256 key pair per credential, answers
shaped as a browser's ``PublicKeyCredential.toJSON()``, "none" attestation. It can be
told to skip user verification, to answer for another origin or RP id, and to count
its signatures as it likes (for the clone check)."""

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey
    user_handle: bytes
    rp_id: str
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )


@dataclass
class Authenticator:
    """Holds credentials, as a phone or a security key would."""

    origin: str
    credentials: list[Credential] = field(default_factory=list)
    verifies_user: bool = True

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        data = {"type": kind, "challenge": challenge, "origin": origin or self.origin}
        return json.dumps({**data, "crossOrigin": False}).encode()

    def _flags(self, extra: int = 0) -> int:
        return UP | (UV if self.verifies_user else 0) | extra

    def create(
        self, options_json: str, *, origin: str | None = None, rp_id: str | None = None
    ) -> dict[str, Any]:
        """Answer creation options: a new credential."""
        options = json.loads(options_json)
        rp = rp_id or options["rp"]["id"]
        excluded = {unb64url(c["id"]) for c in options.get("excludeCredentials", [])}
        if any(c.credential_id in excluded for c in self.credentials):
            raise RuntimeError("InvalidStateError: this authenticator is registered already")
        credential = Credential(
            os.urandom(16),
            ec.generate_private_key(ec.SECP256R1()),
            unb64url(options["user"]["id"]),
            rp,
        )
        self.credentials.append(credential)
        attested = (
            bytes(16)
            + struct.pack(">H", len(credential.credential_id))
            + credential.credential_id
            + credential.cose_public_key()
        )
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([self._flags(AT)])
            + struct.pack(">I", 0)
            + attested
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return {
            "id": b64url(credential.credential_id),
            "rawId": b64url(credential.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        options_json: str,
        *,
        credential: Credential | None = None,
        origin: str | None = None,
        rp_id: str | None = None,
        sign_count: int | None = None,
    ) -> dict[str, Any]:
        """Answer request options with a signature of one of its credentials (the
        first allowed one, or the first it holds for a discoverable login)."""
        options = json.loads(options_json)
        allowed = {unb64url(c["id"]) for c in options.get("allowCredentials", [])}
        chosen = credential or next(
            c for c in self.credentials if not allowed or c.credential_id in allowed
        )
        chosen.sign_count = chosen.sign_count + 1 if sign_count is None else sign_count
        rp = rp_id or options["rpId"]
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([self._flags()])
            + struct.pack(">I", chosen.sign_count)
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = chosen.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(chosen.credential_id),
            "rawId": b64url(chosen.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(chosen.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
