#!/usr/bin/env python3
"""Drives the whole session lifecycle through a client generated from the committed OpenAPI
document by openapi-python-client, against a running websessions (issue 11).

    lifecycle.py --document openapi/openapi.json --base http://127.0.0.1:PORT \
                 --superuser root --password '...' --out DIR

The server must run with `WEBSESSIONS_COOKIE_NAME=websession` and
`WEBSESSIONS_COOKIE_SECURE=false` (the generated client's HTTP library keeps a Secure cookie
only over HTTPS) and with the superuser created. Generation must print no warning, every
answer must be one the document lists, and every body must parse into its generated model.
"""

import argparse
import datetime
import importlib
import os
import subprocess
import sys
from http import HTTPStatus


def generate(document, out):
    result = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", document,
         "--output-path", out, "--overwrite", "--meta", "none"],
        capture_output=True, text=True,
        # The generator formats its output with ruff, installed beside it.
        env=dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]))
    output = result.stdout + result.stderr
    print(output)
    if result.returncode != 0:
        sys.exit(f"the generator failed ({result.returncode})")
    noisy = [line for line in output.splitlines()
             if "warning" in line.lower() or "error" in line.lower()]
    if noisy:
        sys.exit("the generator warned:\n" + "\n".join(noisy))


def check(response, status, model=None):
    if response.status_code != status:
        sys.exit(f"expected {status}, got {response.status_code}: {response.content!r}")
    if model is not None and not isinstance(response.parsed, model):
        sys.exit(f"expected a {model.__name__}, got {response.parsed!r}")
    return response.parsed


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--document", required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--superuser", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    generate(args.document, f"{args.out}/websessions_client")
    sys.path.insert(0, args.out)
    ws = importlib.import_module("websessions_client")
    models = importlib.import_module("websessions_client.models")
    api = lambda family, operation: importlib.import_module(  # noqa: E731
        f"websessions_client.api.{family}.{operation}")

    anonymous = ws.Client(base_url=args.base, raise_on_unexpected_status=True)
    OK, CREATED, NO_CONTENT = HTTPStatus.OK, HTTPStatus.CREATED, HTTPStatus.NO_CONTENT

    # Operations.
    check(api("operations", "live").sync_detailed(client=anonymous), OK, models.Health)
    check(api("operations", "ready").sync_detailed(client=anonymous), OK, models.Health)
    metrics = api("operations", "metrics").sync_detailed(client=anonymous)
    check(metrics, OK)
    assert b"websessions_lockouts_total" in metrics.content

    # The superuser, as an API client.
    login = api("session", "login")
    root_login = check(login.sync_detailed(client=anonymous, body=models.LoginRequest(
        username=args.superuser, password=args.password, client=models.Kind.API)),
        OK, models.SessionView)
    root = ws.AuthenticatedClient(base_url=args.base, token=root_login.credential,
                                  raise_on_unexpected_status=True)
    me = check(api("session", "get_session").sync_detailed(client=root), OK, models.SessionView)
    assert me.user.username == args.superuser and me.user.superuser

    # Administration: users.
    create = api("admin", "create_user")
    alice = check(create.sync_detailed(client=root, body=models.NewUserRequest(
        username="alice", password="alice's first password")), CREATED, models.UserView)
    assert alice.failure_count == 0 and alice.locked_until is None
    taken = create.sync_detailed(client=root, body=models.NewUserRequest(
        username="alice", password="another password"))
    check(taken, HTTPStatus.CONFLICT, models.Problem)
    users = check(api("admin", "list_users").sync_detailed(client=root), OK, models.UserList)
    assert [u.username for u in users.items] == ["alice", args.superuser]
    shown = check(api("admin", "get_user").sync_detailed("alice", client=root), OK,
                  models.UserView)
    assert shown.last_login_at is None
    check(api("admin", "get_user").sync_detailed("nobody", client=root), HTTPStatus.NOT_FOUND,
          models.Problem)

    # A browser: start, client state, login, recognise, password change.
    browser = ws.Client(base_url=args.base, raise_on_unexpected_status=True)
    started = check(api("session", "start_session").sync_detailed(client=browser), CREATED,
                    models.SessionView)
    assert started.user is None and started.authenticated_at is None
    again = check(api("session", "start_session").sync_detailed(client=browser), OK,
                  models.SessionView)
    assert again.id == started.id
    state = models.SetSessionDataBody.from_dict({"step": 2, "answers": ["a", None, 3]})
    check(api("session", "set_session_data").sync_detailed(client=browser, body=state), OK)
    data = check(api("session", "get_session_data").sync_detailed(client=browser), OK)
    assert data.to_dict() == {"step": 2, "answers": ["a", None, 3]}
    wrong = login.sync_detailed(client=anonymous, body=models.LoginRequest(
        username="alice", password="not her password"))
    check(wrong, HTTPStatus.UNAUTHORIZED, models.Problem)
    in_browser = check(login.sync_detailed(client=browser, body=models.LoginRequest(
        username="alice", password="alice's first password", client=models.Kind.BROWSER)),
        OK, models.SessionView)
    assert in_browser.id == started.id and in_browser.user.username == "alice"
    assert isinstance(in_browser.authenticated_at, datetime.datetime)
    changed = check(api("session", "change_password").sync_detailed(
        client=browser, body=models.PasswordChange(
            current_password="alice's first password", new_password="alice's second password")),
        OK, models.SessionView)
    assert changed.id == started.id

    # Alice as an API client too; her own sessions.
    alice_api = check(login.sync_detailed(client=anonymous, body=models.LoginRequest(
        username="alice", password="alice's second password", client=models.Kind.API)),
        OK, models.SessionView)
    mine = check(api("me", "list_my_sessions").sync_detailed(client=browser), OK,
                 models.MySessions)
    assert sorted(s.id for s in mine.items) == sorted([started.id, alice_api.id])
    assert [s.current for s in mine.items if s.id == started.id] == [True]
    check(api("me", "end_my_session").sync_detailed(alice_api.id, client=browser), NO_CONTENT)
    check(api("me", "end_my_session").sync_detailed(alice_api.id, client=browser),
          HTTPStatus.NOT_FOUND, models.Problem)
    check(api("me", "end_my_other_sessions").sync_detailed(client=browser), NO_CONTENT)

    # Administration: every session, paged.
    for _ in range(3):
        check(login.sync_detailed(client=anonymous, body=models.LoginRequest(
            username="alice", password="alice's second password", client=models.Kind.API)),
            OK, models.SessionView)
    list_sessions = api("admin", "list_sessions")
    seen, after = [], importlib.import_module("websessions_client.types").UNSET
    while True:
        page = check(list_sessions.sync_detailed(client=root, limit=2, after=after), OK,
                     models.SessionPage)
        seen.extend(s.id for s in page.items)
        if page.next_ is None:
            break
        after = page.next_
    assert len(seen) == len(set(seen)) == 5, seen
    only_alice = check(list_sessions.sync_detailed(client=root, user="alice"), OK,
                       models.SessionPage)
    assert len(only_alice.items) == 4
    since = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    count = check(api("admin", "count_active_sessions").sync_detailed(
        client=root, active_since=since), OK, models.Count)
    assert count.count == 5
    check(api("admin", "revoke_session").sync_detailed(only_alice.items[0].id, client=root),
          NO_CONTENT)
    check(api("admin", "purge").sync_detailed(client=root), OK, models.Deleted)
    for operation in ("unlock_user", "disable_user", "enable_user", "end_user_sessions"):
        check(api("admin", operation).sync_detailed("alice", client=root), NO_CONTENT)
    check(api("admin", "reset_password").sync_detailed("alice", client=root,
          body=models.NewPasswordRequest(new_password="chosen by the operator")), NO_CONTENT)
    check(api("session", "get_session").sync_detailed(client=browser), HTTPStatus.UNAUTHORIZED,
          models.Problem)
    check(api("admin", "delete_user").sync_detailed("alice", client=root), NO_CONTENT)

    # Logout.
    check(api("session", "logout").sync_detailed(client=root), NO_CONTENT)
    check(api("session", "get_session").sync_detailed(client=root), HTTPStatus.UNAUTHORIZED,
          models.Problem)
    print("the generated client ran the whole lifecycle")


if __name__ == "__main__":
    main()
