"""Test settings: the real settings, with a throwaway SECRET_KEY when none is configured."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-a-secret")

from veosite.settings import *  # noqa: E402,F401,F403

# Accounts are created in many tests; the production hasher's cost is not what they test.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tests see their own rows on the dashboard at once: no snapshots, except where
# tests/test_dashboards.py turns them on.
from datetime import timedelta  # noqa: E402

DASHBOARD_REFRESH = timedelta(0)

# Cloud Storage calls go to a local fake in the tests that want one; never to Google from a
# developer's machine with Application Default Credentials.
GCS_API_BASE_URL = "http://127.0.0.1:9"
