"""A staff member of a given role for flow tests: made with `shop createstaff`, signed in over HTTP."""
from __future__ import annotations

import secrets
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

import httpx

from tests.support import CSRF_FIELD, ROOT, shop_env

PASSWORD = "staff password for flows"


@contextmanager
def signed_in_staff(shop: str, database_url: str, role: str) -> Iterator[httpx.Client]:
    email = f"{role}-{secrets.token_hex(4)}@example.com"
    made = subprocess.run([sys.executable, "-m", "shop", "createstaff", email, "--role", role, "--password-stdin"],
                          input=PASSWORD + "\n", capture_output=True, text=True, cwd=ROOT,
                          env=shop_env(database_url), timeout=60)
    assert made.returncode == 0, made.stderr
    with httpx.Client(base_url=shop, timeout=30, follow_redirects=False) as client:
        token = CSRF_FIELD.search(client.get("/staff/login").text).group(1)
        signed = client.post("/staff/login", data={"email": email, "password": PASSWORD, "_csrf_token": token})
        assert signed.status_code == 303
        yield client
