"""Cloud Storage V4 signed URLs (GOOG4-RSA-SHA256), built with google-auth's signers only.

Google's published algorithm ("V4 signing process with your own program"): a canonical
request, its SHA-256 in a string to sign, that string signed with RSA-SHA256 by the service
account, the signature hex-encoded into the query. Only what veobot needs is supported: a
bodiless request, the ``host`` header as the one signed header, path-style URLs.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from google.auth.credentials import Signing

ALGORITHM = "GOOG4-RSA-SHA256"
HOST = "storage.googleapis.com"
# The longest a V4 signature can be valid.
MAX_TTL = timedelta(days=7)


def canonical_request(*, method: str, path: str, query: str, host: str) -> str:
    return "\n".join([method, path, query, f"host:{host}", "", "host", "UNSIGNED-PAYLOAD"])


def string_to_sign(*, timestamp: str, scope: str, request: str) -> str:
    return "\n".join([ALGORITHM, timestamp, scope, hashlib.sha256(request.encode()).hexdigest()])


def sign_url(
    *, bucket: str, name: str, signer: Signing, ttl: timedelta, now: datetime | None = None, method: str = "GET"
) -> str:
    """A URL that lets anyone holding it ``method`` the object for ``ttl`` from ``now``.

    ``signer`` is any google-auth credential that can sign (a service-account key signs
    locally; impersonated credentials call IAM's signBlob)."""
    seconds = int(ttl.total_seconds())
    if not 1 <= seconds <= MAX_TTL.total_seconds():
        raise ValueError(f"a V4 signed URL lives 1 s to 7 days, not {ttl}")
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    timestamp, day = moment.strftime("%Y%m%dT%H%M%SZ"), moment.strftime("%Y%m%d")
    scope = f"{day}/auto/storage/goog4_request"
    # RFC 3986: every byte but the unreserved ones is escaped; '/' separates the path's parts.
    path = quote(f"/{bucket}/{name}" if name else f"/{bucket}", safe="/")
    parameters = {
        "X-Goog-Algorithm": ALGORITHM,
        "X-Goog-Credential": f"{signer.signer_email}/{scope}",
        "X-Goog-Date": timestamp,
        "X-Goog-Expires": str(seconds),
        "X-Goog-SignedHeaders": "host",
    }
    query = "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in sorted(parameters.items()))
    request = canonical_request(method=method, path=path, query=query, host=HOST)
    signature = signer.sign_bytes(string_to_sign(timestamp=timestamp, scope=scope, request=request).encode())
    return f"https://{HOST}{path}?{query}&X-Goog-Signature={signature.hex()}"
