"""Schemathesis hooks for the superuser run: every case carries a superuser credential, from a
login at most once a second. The run is free to revoke that session, or to reset, disable or
delete the superuser it finds in the answers; when the login fails, the hook makes a new
superuser with the `websessions` command line (WS_BIN, configured like the server through the
inherited WEBSESSIONS_* variables) and logs it in. The server's address comes from WS_BASE.
"""

import itertools
import os
import subprocess

import requests
import schemathesis

PASSWORD = "a superuser's password"
_names = (f"root{n}" for n in itertools.count())
_current = None


def _login(name):
    return requests.post(
        os.environ["WS_BASE"] + "/v1/session/login",
        json={"username": name, "password": PASSWORD, "client": "api"},
        timeout=30,
    )


@schemathesis.auth(refresh_interval=1)
class SuperuserLogin:
    def get(self, case, context):
        global _current
        answer = _login(_current) if _current else None
        if answer is None or answer.status_code != 200:
            _current = next(_names)
            subprocess.run([os.environ["WS_BIN"], "user", "create", _current, "--superuser"],
                           input=PASSWORD + "\n", text=True, check=True, capture_output=True)
            answer = _login(_current)
        answer.raise_for_status()
        return answer.json()["credential"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
