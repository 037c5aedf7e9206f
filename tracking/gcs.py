"""Cloud Storage for gs:// outputs: credentials, object metadata, signed links.

Through the JSON API with google-auth's AuthorizedSession (google-auth and requests come
with google-genai; google-cloud-storage is not needed for three calls). GCS_API_BASE_URL
lets tests point the API at a local fake. Problems are reported by kind and status, never
with credentials or tokens.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

import google.auth
import google.auth.exceptions
import requests
from django.conf import settings
from google.auth.credentials import Credentials, Signing
from google.auth.transport.requests import AuthorizedSession

from tracking import gcs_signing

log = logging.getLogger(__name__)

GCS_SCHEME = "gs://"
GCS_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
NO_CREDENTIALS = "no Google credentials (Application Default Credentials)"
NO_SIGNER = (
    "no signing credentials: signed links need a service-account key (GOOGLE_APPLICATION_CREDENTIALS) "
    "or impersonated credentials"
)
# What a call to Cloud Storage may raise. A token endpoint (or a proxy in front of it) that
# answers 200 with something other than a token makes google-auth itself fail with
# TypeError / KeyError / ValueError while parsing it: still a problem to report, not a crash.
FAILURES = (requests.RequestException, google.auth.exceptions.GoogleAuthError, TypeError, KeyError, ValueError)


def split(uri: str) -> tuple[str, str]:
    """gs://bucket/some/object -> ("bucket", "some/object")."""
    bucket, _, name = uri.removeprefix(GCS_SCHEME).partition("/")
    return bucket, name


def object_url(uri: str) -> str:
    bucket, name = split(uri)
    return f"{settings.GCS_API_BASE_URL}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"


def default_credentials() -> Credentials | None:
    """Application Default Credentials, looked up once per process (the lookup may probe the
    metadata server); None when there are none."""
    return _default_credentials(os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))


@functools.lru_cache(maxsize=8)
def _default_credentials(key_file: str | None) -> Credentials | None:
    # Keyed on the key file so that a changed GOOGLE_APPLICATION_CREDENTIALS is looked up again.
    try:
        found, _ = google.auth.default(scopes=[GCS_SCOPE])
    except (google.auth.exceptions.GoogleAuthError, ValueError, OSError) as error:  # OSError: an unreadable key file
        log.info("Cloud Storage: %s (%s)", NO_CREDENTIALS, type(error).__name__)
        return None
    return found


def session(credentials: Credentials) -> AuthorizedSession:
    # The token refresh gets the same bound as every other call.
    return AuthorizedSession(credentials, refresh_timeout=settings.VEO_HTTP_TIMEOUT.total_seconds())


# -- metadata ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    size_bytes: int | None = None
    content_type: str | None = None
    problem: str | None = None  # why size and type are unknown


def object_info(uri: str, *, credentials: Credentials | None = None) -> ObjectInfo:
    """Size and content type of a gs:// object (objects.get, metadata only), bounded by
    VEO_HTTP_TIMEOUT. Never raises: a problem is returned instead."""
    credentials = credentials or default_credentials()
    if credentials is None:
        return ObjectInfo(problem=NO_CREDENTIALS)
    try:
        with session(credentials) as http:
            response = http.get(
                object_url(uri),
                params={"fields": "size,contentType"},
                timeout=settings.VEO_HTTP_TIMEOUT.total_seconds(),
            )
    except FAILURES as error:
        return ObjectInfo(problem=f"Cloud Storage unreachable ({type(error).__name__})")
    if response.status_code != 200:
        return ObjectInfo(problem=f"Cloud Storage answered {response.status_code}")
    try:
        body = response.json()
        size = int(body["size"])  # the JSON API sends it as a string
    except (ValueError, KeyError, TypeError):
        return ObjectInfo(problem="Cloud Storage answered without a readable size")
    content_type = body.get("contentType")
    return ObjectInfo(size_bytes=size, content_type=content_type if isinstance(content_type, str) else None)


# -- signed links ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedLink:
    url: str | None = None
    problem: str | None = None


def signer() -> Signing | None:
    """The credentials, when they can sign. Metadata-server credentials (GCE, Cloud Run)
    cannot: they need a service-account key or impersonation."""
    found = default_credentials()
    return found if isinstance(found, Signing) else None


def signed_link(uri: str, *, ttl: timedelta) -> SignedLink:
    """A V4 signed GET URL for a gs:// output, valid for ``ttl``. Never raises."""
    if not uri.startswith(GCS_SCHEME):
        return SignedLink(problem="not a gs:// output")
    found = signer()
    if found is None:
        return SignedLink(problem=NO_SIGNER)
    bucket, name = split(uri)
    try:
        return SignedLink(url=gcs_signing.sign_url(bucket=bucket, name=name, signer=found, ttl=ttl))
    except FAILURES as error:  # impersonated credentials sign remotely (IAM signBlob)
        return SignedLink(problem=f"signing failed ({type(error).__name__})")
