#!/usr/bin/env python3
"""A database restart under wrk (issue 15): what recognition answers while the database restarts.

Run with `just bench-restart` or `python3 tests/bench/restart.py`. Needs root (the PostgreSQL
cluster runs as `postgres` through `runuser`), PostgreSQL's server binaries, MariaDB's
(`mariadbd`, `mariadb-install-db`) and wrk. For each engine it makes a database server of its
own on a free port (never the machine's shared ones), starts the release binary on it with
the default `WEBSESSIONS_DATABASE_WAIT` (5 s), logs 50 browser sessions in, then runs
`wrk -t2 -c16 -d20s --timeout 10s` on `GET /v1/session`; 6 s in, it stops the database, keeps
it down for 1.5 s and starts it again (about 2 s from the stop to accepting connections). It
prints, per engine: requests, non-2xx answers, socket errors and timeouts, p99 and max latency
(wrk's max bounds the p99 of the requests during the restart), and how long the database was
down. Then, with 100 connections, it ends every connection the service holds once (as an
administrator or a failover would: `pg_terminate_backend`, MariaDB's `KILL`) and counts the
non-2xx answers. Then it stops the database for 8 s (past the wait) and reports what a request
answered and how long it took, and that the service recovered by itself.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import bench

PASSWORD = "correct horse battery"
SESSIONS = 50
# A plain-HTTP cookie (no `__Host-` prefix, no Secure): wrk speaks plain HTTP.
COOKIE = "websession"


def pg_bin(tool):
    return os.path.join(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1], tool)


class OwnDatabase:
    """A database server of this script's own: PostgreSQL (`pg`) or MariaDB (`mariadb`)."""

    def __init__(self, engine):
        self.engine = engine
        self.dir = tempfile.mkdtemp(prefix=f"wsrestart-{engine}")
        self.data = os.path.join(self.dir, "data")
        self.port = bench.free_port()
        self.proc = None
        if engine == "pg":
            bench.run(["chown", "postgres:", self.dir])
            bench.run(["runuser", "-u", "postgres", "--", pg_bin("initdb"), "-A", "trust",
                       "-U", "postgres", "-N", "-D", self.data])
            self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        else:
            bench.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.data}",
                       "--user=root", "--auth-root-authentication-method=normal"])
            self.url = f"mysql://root@127.0.0.1:{self.port}/test"
        self.start()

    def start(self):
        if self.engine == "pg":
            options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
            bench.run(["runuser", "-u", "postgres", "--", pg_bin("pg_ctl"), "-D", self.data,
                       "-l", os.path.join(self.dir, "log"), "-w", "-o", options, "start"])
            return
        log = open(os.path.join(self.dir, "log"), "a")
        self.proc = subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.data}",
             f"--port={self.port}", f"--socket={self.dir}/sock", f"--pid-file={self.dir}/pid",
             "--user=root", "--bind-address=127.0.0.1", "--skip-log-bin"],
            stdout=log, stderr=log)
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self):
        if self.engine == "pg":
            bench.run(["runuser", "-u", "postgres", "--", pg_bin("pg_ctl"), "-D", self.data,
                       "-m", "fast", "-w", "stop"])
        else:
            self.proc.terminate()
            self.proc.wait()

    def end_every_connection(self):
        """Ends every client connection but the one asking."""
        if self.engine == "pg":
            bench.run(["psql", f"postgres://postgres@127.0.0.1:{self.port}/postgres", "-qAt", "-c",
                       "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"])
            return
        # --force: a connection that ended meanwhile does not stop the others' KILL.
        mysql = ["mysql", "-uroot", "-h127.0.0.1", f"-P{self.port}", "-N", "--force", "-e"]
        ids = bench.run(mysql + ["SELECT id FROM information_schema.processlist "
                                 "WHERE user = 'root' AND id <> CONNECTION_ID()"]).split()
        if ids:
            subprocess.run(mysql + ["".join(f"KILL {i};" for i in ids)], capture_output=True)

    def remove(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def browser_logins(server, count):
    """`count` browser sessions of alice; their credentials."""
    credentials = []
    for _ in range(count):
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/v1/session/login", method="POST",
            data=json.dumps({"username": "alice", "password": PASSWORD,
                             "client": "browser"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as resp:
            cookie = resp.headers["Set-Cookie"]
        credentials.append(cookie.split(";", 1)[0].split("=", 1)[1])
    return credentials


def recognise(server, credential):
    """One recognition: (status, seconds, Retry-After)."""
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/v1/session",
                                     headers={"Cookie": f"{COOKIE}={credential}"})
    started = time.time()
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, time.time() - started, None
    except urllib.error.HTTPError as error:
        return error.code, time.time() - started, error.headers.get("Retry-After")


def one_engine(engine):
    db = OwnDatabase(engine)
    # Every browser login keeps the others (the load rotates over 50 of them).
    server = bench.Server(db, cookie_secure="false", cookie_name=COOKIE,
                          single_browser_session="false")
    try:
        server.command("user", "create", "alice", stdin=PASSWORD + "\n")
        credentials = browser_logins(server, SESSIONS)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(credentials) + "\n")
            credentials_file = f.name
        outage = {}

        def restart():
            time.sleep(6)
            outage["stopping"] = time.time()
            db.stop()
            time.sleep(1.5)
            db.start()
            outage["back"] = time.time()

        bouncer = threading.Thread(target=restart)
        bouncer.start()
        env = dict(os.environ, CREDENTIALS=credentials_file, COOKIE_NAME=COOKIE)
        out = bench.run(["wrk", "-t2", "-c16", "-d20s", "--timeout", "10s", "-s",
                         os.path.join(bench.HERE, "recognise.lua"),
                         f"http://127.0.0.1:{server.port}/v1/session"], env=env)
        bouncer.join()
        line = next(l for l in out.splitlines() if l.startswith("BENCH "))
        r = json.loads(line[6:])
        down = outage["back"] - outage["stopping"]
        print(f"{engine}: restart, down {down:.2f} s: {r['requests']} requests, "
              f"{r['non2xx']} non-2xx, {r['socket_errors']} socket errors "
              f"({r['timeouts']} timeouts), p99 {r['p99_us'] / 1000:.1f} ms, "
              f"max {r['max_us'] / 1000:.0f} ms (bound: {(down + 1) * 1000:.0f} ms)")

        # Every connection ended once, under 100 connections.
        killer = threading.Thread(target=lambda: (time.sleep(3), db.end_every_connection()))
        killer.start()
        out = bench.run(["wrk", "-t2", "-c100", "-d8s", "--timeout", "10s", "-s",
                         os.path.join(bench.HERE, "recognise.lua"),
                         f"http://127.0.0.1:{server.port}/v1/session"], env=env)
        killer.join()
        r = json.loads(next(l for l in out.splitlines() if l.startswith("BENCH "))[6:])
        print(f"{engine}: every connection ended once, 100 clients: {r['requests']} requests, "
              f"{r['non2xx']} non-2xx, {r['socket_errors']} socket errors, "
              f"max {r['max_us'] / 1000:.0f} ms")

        # Down past the wait (5 s): 503 with Retry-After, then recovery without a restart.
        db.stop()
        stopped = time.time()
        status, took, retry_after = recognise(server, credentials[0])
        time.sleep(max(0.0, 8 - (time.time() - stopped)))
        db.start()
        back = [recognise(server, c)[0] for c in credentials]
        print(f"{engine}: down past the 5 s wait: answered {status} (Retry-After "
              f"{retry_after}) after {took:.2f} s; once back: {back.count(200)} of "
              f"{len(back)} recognitions 200 without a restart of the service")
        os.unlink(credentials_file)
    finally:
        server.stop()
        db.remove()


def main():
    bench.ensure_tools()
    if not os.environ.get("BENCH_BIN"):
        bench.build()
    for engine in ("pg", "mariadb"):
        one_engine(engine)


if __name__ == "__main__":
    main()
