"""Test settings: the real settings, with a throwaway SECRET_KEY when none is configured."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-a-secret")

from veosite.settings import *  # noqa: E402,F401,F403

# Accounts are created in many tests; the production hasher's cost is not what they test.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
