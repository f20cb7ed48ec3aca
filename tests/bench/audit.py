#!/usr/bin/env python3
"""What the audit trail (R19) costs, on PostgreSQL, over two processes on one database.

Run with `just bench-audit` or `python3 tests/bench/audit.py [--other OTHER_BINARY]`. Builds
the release binary (unless `--binary` is given), then, for this build and, with `--other`, an
earlier one (a release binary of the commit before the trail recorded anything), in turns:

  login storm   wrk (1 thread, 4 connections each) logging the bench user in as an API client
                on both processes at once, 10 s: logins/s, and audit records committed/s
  revocations   an operator ending sessions by id (DELETE /v1/admin/sessions/{id}), 4 clients
                on each process, 10 s, over 20,000 sessions seeded in the table: ends/s and
                records/s

Each build gets a fresh database. Records/s is the growth of `audit_records` over the window;
at the end the chain is walked with `websessions audit verify`, which must pass. It needs the
local PostgreSQL (trust auth for `postgres` on 127.0.0.1; `BENCH_POSTGRES_URL` overrides it)
and wrk (installed from Debian when missing).
"""

import argparse
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PG = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
SECONDS = 10
SESSIONS = 20_000
PASSWORD = "bench password 123"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def psql(db, sql):
    return run(["psql", f"{PG}/{db}", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql]).strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Build:
    """Two processes of one binary on a fresh database."""

    def __init__(self, binary, label):
        self.binary, self.label = binary, label
        self.db = f"wsaudit_{os.getpid()}_{label}"
        psql("postgres", f"DROP DATABASE IF EXISTS {self.db}")
        psql("postgres", f"CREATE DATABASE {self.db}")
        self.env = dict(os.environ, WEBSESSIONS_DATABASE_URL=f"{PG}/{self.db}",
                        WEBSESSIONS_LOGIN_LIMIT="0", WEBSESSIONS_SESSION_START_LIMIT="0",
                        WEBSESSIONS_LOCKOUT_THRESHOLD="1000000",
                        WEBSESSIONS_SINGLE_BROWSER_SESSION="false", RUST_LOG="warn")
        self.command("migrate")
        self.command("user", "create", "bench", stdin=PASSWORD + "\n")
        self.command("user", "create", "root", "--superuser", stdin=PASSWORD + "\n")
        self.ports, self.procs = [], []
        for _ in range(2):
            port = free_port()
            env = dict(self.env, WEBSESSIONS_LISTEN=f"127.0.0.1:{port}")
            self.procs.append(subprocess.Popen([binary, "serve"], env=env,
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
            self.ports.append(port)
        for port in self.ports:
            wait_until_serving(port)

    def command(self, *args, stdin=""):
        return subprocess.run([self.binary, *args], env=self.env, input=stdin, check=True,
                              capture_output=True, text=True).stdout

    def records(self):
        has = psql(self.db, "SELECT to_regclass('audit_records') IS NOT NULL")
        return int(psql(self.db, "SELECT count(*) FROM audit_records")) if has == "t" else 0

    def stop(self):
        for proc in self.procs:
            proc.terminate()
            proc.wait()
        psql("postgres", f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")


def wait_until_serving(port):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health/live")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"no server on port {port}")


def bearer(port, name):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = f'{{"username":"{name}","password":"{PASSWORD}","client":"api"}}'
    conn.request("POST", "/v1/session/login", body, {"Content-Type": "application/json"})
    answer = conn.getresponse()
    text = answer.read().decode()
    assert answer.status == 200, text
    return text.split('"credential":"')[1].split('"')[0]


def login_storm(build):
    script = os.path.join(HERE, "login.lua")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(open(script).read().replace('"bench password 123"', f'"{PASSWORD}"'))
    before = build.records()
    started = time.time()
    wrks = [subprocess.Popen(["wrk", "-t1", "-c4", f"-d{SECONDS}s", "-s", lua.name,
                              f"http://127.0.0.1:{port}"],
                             stdout=subprocess.PIPE, text=True) for port in build.ports]
    outs = [w.communicate()[0] for w in wrks]
    took = time.time() - started
    os.unlink(lua.name)
    logins = 0.0
    for out in outs:
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                logins += float(line.split()[1])
            if "Non-2xx" in line:
                sys.exit(f"{build.label}: logins failed:\n{out}")
    return logins, (build.records() - before) / took


def revocations(build):
    psql(build.db, f"""
        INSERT INTO sessions (token_hash, ip_address, kind, user_id, created_at,
                              last_activity_at, authenticated_at, data)
        SELECT decode(md5(n::text) || md5(n::text), 'hex'), '127.0.0.1', 'api',
               (SELECT id FROM users WHERE username = 'bench'),
               extract(epoch FROM now())::bigint, extract(epoch FROM now())::bigint,
               extract(epoch FROM now())::bigint, '{{}}'
        FROM generate_series(1, {SESSIONS}) AS n""")
    ids = [int(i) for i in psql(build.db, "SELECT id FROM sessions WHERE user_id = "
                                "(SELECT id FROM users WHERE username = 'bench')").split()]
    token = bearer(build.ports[0], "root")
    lock = threading.Lock()
    ended, stop = [0], time.time() + SECONDS

    def client(port):
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while time.time() < stop:
            with lock:
                if not ids:
                    return
                session = ids.pop()
            conn.request("DELETE", f"/v1/admin/sessions/{session}",
                         headers={"Authorization": f"Bearer {token}"})
            answer = conn.getresponse()
            answer.read()
            if answer.status != 204:
                sys.exit(f"{build.label}: revoking answered {answer.status}")
            with lock:
                ended[0] += 1

    before = build.records()
    started = time.time()
    threads = [threading.Thread(target=client, args=(port,))
               for port in build.ports for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - started
    return ended[0] / took, (build.records() - before) / took


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "websessions"))
    parser.add_argument("--other", help="an earlier release binary to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "wrk"], env=env)
    if not os.environ.get("BENCH_NO_BUILD") and args.binary.startswith(ROOT):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "websessions-api"], cwd=ROOT,
                       check=True)
    builds = [("this", args.binary)] + ([("other", args.other)] if args.other else [])
    results = {label: [] for label, _ in builds}
    # In turns, so the machine's drift falls on both alike.
    for round_ in range(args.rounds):
        for label, binary in builds:
            build = Build(binary, f"{label}{round_}")
            try:
                storm = login_storm(build)
                ends = revocations(build)
                if label == "this":
                    verified = build.command("audit", "verify")
                    assert "head" in verified, verified
                results[label].append((storm, ends))
            finally:
                build.stop()
    print("| build | logins/s | records/s (logins) | revocations/s | records/s (revocations) |")
    print("|---|---|---|---|---|")
    for label, rows in results.items():
        for (logins, login_records), (ends, end_records) in rows:
            print(f"| {label} | {logins:.1f} | {login_records:.1f} | {ends:.1f} | "
                  f"{end_records:.1f} |")
    if args.other:
        def mean(label, pick):
            rows = results[label]
            return sum(pick(r) for r in rows) / len(rows)
        for name, pick in [("logins/s", lambda r: r[0][0]), ("revocations/s", lambda r: r[1][0])]:
            print(f"{name}: this build {mean('this', pick) / mean('other', pick):.3f} x the other's")


if __name__ == "__main__":
    main()
