"""Throw-away service-account keys for tests, and an independent check of V4 signed URLs.

A key is generated per test (never a real one), written as a service-account key file whose
token_uri is the Veo fake's OAuth endpoint, so google-auth's own service-account flow runs
against it. ``signed_message`` rebuilds what a V4 signed URL's signature covers straight from
Google's published algorithm, separately from tracking/gcs_signing.py.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

EMAIL = "veobot-signer@veobot-test.iam.gserviceaccount.com"


@dataclass(frozen=True)
class ThrowawayKey:
    path: Path
    email: str
    public_key: RSAPublicKey


def service_account_key(folder: Path, *, token_uri: str, email: str = EMAIL) -> ThrowawayKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = folder / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "veobot-test",
                "private_key_id": "0" * 40,
                "private_key": pem,
                "client_email": email,
                "client_id": "1",
                "token_uri": token_uri,
            }
        )
    )
    return ThrowawayKey(path=path, email=email, public_key=private.public_key())


def user_credentials_file(folder: Path) -> Path:
    """Application Default Credentials of a person (gcloud auth application-default login):
    they can call APIs but cannot sign. (google-auth always refreshes them at Google's token
    endpoint: use them only where nothing is called.)"""
    path = folder / "user-credentials.json"
    path.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "id",
                "client_secret": "not-a-secret",
                "refresh_token": "not-a-token",
            }
        )
    )
    return path


def signed_message(url: str, *, method: str = "GET") -> tuple[bytes, bytes]:
    """(the string to sign, the signature) of a path-style V4 signed URL that signs only ``host``."""
    parts = urlsplit(url)
    query, _, signature = parts.query.partition("&X-Goog-Signature=")
    parameters = dict(parse_qsl(query))
    assert parameters["X-Goog-SignedHeaders"] == "host" and parameters["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    scope = parameters["X-Goog-Credential"].split("/", 1)[1]
    canonical = f"{method}\n{parts.path}\n{query}\nhost:{parts.hostname}\n\nhost\nUNSIGNED-PAYLOAD"
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"GOOG4-RSA-SHA256\n{parameters['X-Goog-Date']}\n{scope}\n{digest}"
    return to_sign.encode(), bytes.fromhex(signature)


def signature_is_valid(url: str, public_key: RSAPublicKey, *, method: str = "GET") -> bool:
    message, signature = signed_message(url, method=method)
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
