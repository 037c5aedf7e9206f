"""Outputs in Cloud Storage: V4 signed URLs, object metadata, and the admin's player.

Signing is checked against Google's published V4 conformance vectors (googleapis/
conformance-tests, storage/v1/v4_signatures.json) and by verifying RSA signatures with the
public half of a key made for the test. Metadata and token calls go over HTTP to the Veo
fake's Cloud Storage and OAuth routes, through google-auth's real service-account flow.
"""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization

from tests.factories import VideoRequestFactory
from tests.gcs_keys import service_account_key, signature_is_valid, signed_message
from tracking import gcs, gcs_signing
from tracking.admin.views import ADMIN_LINK_TTL

LIST = "/admin/tracking/videorequest/"

# -- V4 signing against the published vectors --------------------------------------------------

# Published by Google's conformance tests (see "source" in the file).
VECTORS = json.loads((Path(__file__).parent / "v4_signature_vectors.json").read_text())
# The public half of the vectors' dummy key (inactive, published for these tests).
VECTOR_PUBLIC_KEY = b"""-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEArD8zIqyKLbX0Nq8o0Jj1
qHEhHhqO3+0OP7TEFx5Vxc6PdwBoFNrfnJRI/S+ZaDYS1avr5Pqpp8g8+UNOMvI1
VsjGM8xjTaxkVv8mmKp6pSmQstTt25pzY1exA2wv4xNWSwWNFNx2kh35+kvTQ/DF
3YA9P7pUU1sKur1PP8OoubWLFO59iy5UE5dX0O/3pjvZ2HAhSXsx2VWtB5nlrHR8
FrKJNLJMEGEDSMz9yRfQaUeYCU9oDYHuiqKQ3rCXi6C82l+3FJw5/ggJ5y7iw8ME
rCFSslcYQRbBVz6ZYKWkEcJhs8BG3/16bfaqNusNlDIJ99I7DmipUngF/HEulYhf
rQIDAQAB
-----END PUBLIC KEY-----
"""


def unsigned_part(url: str) -> str:
    return url.partition("&X-Goog-Signature=")[0]


@pytest.mark.parametrize("vector", VECTORS["signingV4Tests"], ids=lambda vector: vector["description"])
def test_v4_signing_matches_the_published_vectors(tmp_path, vector):
    from google.oauth2 import service_account

    key = service_account_key(tmp_path, token_uri="http://127.0.0.1:9/token", email=VECTORS["signerEmail"])
    signer = service_account.Credentials.from_service_account_file(str(key.path))
    method, expected = vector["method"], vector["expectedUrl"]
    url = gcs_signing.sign_url(
        bucket=vector["bucket"],
        name=vector["object"],
        signer=signer,
        ttl=timedelta(seconds=vector["expiration"]),
        now=datetime.fromisoformat(vector["timestamp"]),
        method=method,
    )

    # Everything but the signature is byte for byte the published URL ...
    assert unsigned_part(url) == unsigned_part(expected)
    # ... the published signature (made by Google's clients with the dummy key) covers exactly
    # the string to sign rebuilt from it, so that string is the one the algorithm defines ...
    vector_key = serialization.load_pem_public_key(VECTOR_PUBLIC_KEY)
    assert signature_is_valid(expected, vector_key, method=method)
    # ... and ours signs that same string, with our key.
    assert signed_message(url, method=method)[0] == signed_message(expected, method=method)[0]
    assert signature_is_valid(url, key.public_key, method=method)
    assert not signature_is_valid(url, vector_key, method=method)


def test_object_names_are_escaped_in_the_path_and_the_ttl_is_bounded(tmp_path):
    from google.oauth2 import service_account

    key = service_account_key(tmp_path, token_uri="http://127.0.0.1:9/token")
    signer = service_account.Credentials.from_service_account_file(str(key.path))
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    url = gcs_signing.sign_url(
        bucket="veo-out", name="videos/12/a b&c+é.mp4", signer=signer, ttl=gcs_signing.MAX_TTL, now=now
    )
    parts = urlsplit(url)
    assert parts.path == "/veo-out/videos/12/a%20b%26c%2B%C3%A9.mp4"
    query = parse_qs(parts.query)
    assert query["X-Goog-Expires"] == ["604800"] and query["X-Goog-Date"] == ["20260102T030405Z"]
    assert query["X-Goog-Credential"] == [f"{key.email}/20260102/auto/storage/goog4_request"]
    assert len(query["X-Goog-Signature"][0]) == 512  # hex of a 2048-bit RSA signature
    assert signature_is_valid(url, key.public_key)
    for ttl in (timedelta(0), gcs_signing.MAX_TTL + timedelta(seconds=1)):
        with pytest.raises(ValueError):
            gcs_signing.sign_url(bucket="b", name="o", signer=signer, ttl=ttl)


# -- metadata over the JSON API ------------------------------------------------------------------


def test_object_info_reads_size_and_type_with_a_service_account(gcs_api, signing_key):
    uri = "gs://veo-out/veo/1/sample_0.mp4"
    gcs_api.state._gcs[uri] = b"x" * 1234
    assert gcs.object_info(uri) == gcs.ObjectInfo(size_bytes=1234, content_type="video/mp4")
    token, metadata = [r for r in gcs_api.requests if r.kind in ("token", "metadata")]
    assert token.method == "POST" and (metadata.auth, metadata.query["fields"]) == ("bearer", ["size,contentType"])
    assert metadata.path == "/storage/v1/b/veo-out/o/veo%2F1%2Fsample_0.mp4"


@pytest.mark.parametrize(
    ("status", "stall", "problem"),
    [
        (403, 0, "Cloud Storage answered 403"),
        (404, 0, "Cloud Storage answered 404"),
        (None, 3, "Cloud Storage unreachable (ReadTimeout)"),
    ],
)
def test_object_info_reports_problems_instead_of_raising(gcs_api, signing_key, settings, status, stall, problem):
    settings.VEO_HTTP_TIMEOUT = timedelta(seconds=1)
    uri = "gs://veo-out/veo/2/sample_0.mp4"
    gcs_api.state._gcs[uri] = b"video"
    gcs_api.gcs_metadata_status, gcs_api.gcs_metadata_stall = status, stall
    assert gcs.object_info(uri) == gcs.ObjectInfo(problem=problem)


@pytest.mark.parametrize("key_file", ["missing.json", "a-folder"])  # absent, or unreadable as a file
def test_object_info_without_credentials(gcs_api, monkeypatch, tmp_path, key_file):
    (tmp_path / "a-folder").mkdir()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / key_file))
    assert gcs.object_info("gs://veo-out/o.mp4") == gcs.ObjectInfo(problem=gcs.NO_CREDENTIALS)
    assert gcs.signed_link("gs://veo-out/o.mp4", ttl=timedelta(minutes=1)).problem == gcs.NO_SIGNER


# -- the admin's player ------------------------------------------------------------------------------


@pytest.fixture
def mod(as_role):
    return as_role("moderator")


def test_a_gcs_output_plays_through_a_short_lived_signed_url(mod, signing_key):
    row = VideoRequestFactory(output_uris=["gs://veo-out/veo/7/sample_0.mp4"])
    body = mod.get(f"{LIST}{row.id}/change/").content.decode()
    assert f'src="{LIST}{row.id}/output/0/"' in body

    response = mod.get(f"{LIST}{row.id}/output/0/")
    assert response.status_code == 302 and "no-store" in response["Cache-Control"]
    url = response["Location"]
    assert url.startswith("https://storage.googleapis.com/veo-out/veo/7/sample_0.mp4?")
    assert parse_qs(urlsplit(url).query)["X-Goog-Expires"] == [str(int(ADMIN_LINK_TTL.total_seconds()))]
    assert signature_is_valid(url, signing_key.public_key)


def test_without_signing_credentials_the_page_says_so(mod, gcs_api, monkeypatch, tmp_path):
    from tests.gcs_keys import user_credentials_file

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(user_credentials_file(tmp_path)))
    row = VideoRequestFactory(output_uris=["gs://veo-out/veo/8/sample_0.mp4"])
    body = mod.get(f"{LIST}{row.id}/change/").content.decode()
    assert "not viewable: no signing credentials" in body and "<video" not in body

    response = mod.get(f"{LIST}{row.id}/output/0/")
    text = response.content.decode()
    assert response.status_code == 503 and text.startswith("Not viewable: no signing credentials")
    assert "not-a-secret" not in text and "Traceback" not in text


def test_a_removed_gcs_output_is_not_signed(mod, signing_key):
    row = VideoRequestFactory(output_uris=["gs://veo-out/veo/9/sample_0.mp4"], review_status="removed")
    assert mod.get(f"{LIST}{row.id}/output/0/").status_code == 404


@pytest.mark.parametrize("role", ["anonymous", "non_staff"])
def test_only_staff_are_sent_to_a_signed_url(as_role, signing_key, role):
    row = VideoRequestFactory(output_uris=["gs://veo-out/veo/10/sample_0.mp4"])
    response = as_role(role).get(f"{LIST}{row.id}/output/0/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
