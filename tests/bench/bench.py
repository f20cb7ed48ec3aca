#!/usr/bin/env python3
"""Load benchmark of websessions' hot path (`GET /v1/session`), with its baselines.

Run with `just bench` or `python3 tests/bench/bench.py [--runs 3]`. Needs the local PostgreSQL
(trust auth for `postgres` on 127.0.0.1), `pgbench` and `wrk` (installed from Debian if
missing). Builds the release binary, then for each run measures:

  floor      the server's own GET /health/live (the HTTP floor)
  pg-read    pgbench -M prepared -c 8 -j 2 running the hot path's read (the database limit)
  pg-write   the same for the hot path's conditional touch
  a-pg       recognition, default touch_interval, PostgreSQL, 10 thousand sessions  (= d-10k)
  a-sqlite   the same on SQLite
  b-pg       recognition with touch_interval=0 (a write per request, CamCOPS's behaviour)
  c-pg       (a) while 4 clients log in continuously (argon2id at full cost)
  d-1m       (a) with 1 million sessions in the table
  e-purge    (a) while `websessions purge` deletes 1 million expired rows
  f-nginx    (a) through nginx (tests/gateway/nginx.conf) to two processes on one database
  peer-pg    the peer: axum + tower-sessions 0.14 (tests/bench/peer, default read-only
             configuration) reading its session per request, PostgreSQL, same database
  peer-sqlite  the same on SQLite, same database file

`--instructions OTHER_BINARY` counts, with callgrind, the instructions the server executes per
recognition (one request at a time), for this build and another: a count that repeats from
run to run where CPU time on this machine varies by 20% between rounds.

`--compare OTHER_BINARY` measures only the floor and recognition (a-pg, a-sqlite) for this
build and another (an earlier commit's release binary), in turns within one run, and prints
this build's CPU per request as a ratio of the other's.

Every row reports the server's CPU per request and its ratio to the HTTP floor's (the same
server's GET /health/live on that database); the targets of issue 14 are checked below the
table: recognition's CPU per request at most 2.5 x the floor's, and at least 1.3 x the peer's
requests/s, on PostgreSQL and on SQLite.

For PostgreSQL scenarios it counts statements (committed transactions) and round trips (data
segments the server sent to PostgreSQL, from `ss`) per request,
and prints one table (medians over the runs) that it also writes to
tests/bench/results/<timestamp>.md. wrk: 2 threads, 32 connections, 10 s after a 2 s warm-up,
over a few hundred distinct credentials.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# BENCH_BIN measures another build (an earlier commit's, say) with the same script.
BIN = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release", "websessions")
PEER_TARGET = os.path.join(ROOT, "target", "bench-peer")
PEER_BIN = os.path.join(PEER_TARGET, "release", "websessions-bench-peer")
PG = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
CREDENTIAL_COUNT = 300
WARMUP_S = 2
DURATION_S = 10
TICK = os.sysconf("SC_CLK_TCK")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def psql(db, sql):
    return run(["psql", f"{PG}/{db}", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql]).strip()


def ensure_tools():
    if not shutil.which("wrk"):
        print("installing wrk from Debian ...", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "wrk"], env=env)
    if not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
        print("installing nginx from Debian ...", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "nginx-light"], env=env)
    for tool in ("pgbench", "psql"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: install postgresql-client")


def build():
    print("building the release binary ...", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "websessions-api"], cwd=ROOT, check=True)


def build_peer():
    print("building the peer (tests/bench/peer) ...", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "-q", "--manifest-path",
                    os.path.join(HERE, "peer", "Cargo.toml"), "--target-dir", PEER_TARGET],
                   check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token(i):
    # Deterministic 16-byte tokens, so SQL can seed their hashes: md5(i) as bytes.
    return hashlib.md5(str(i).encode()).digest()


def credential(i):
    return f"{i}.{base64.urlsafe_b64encode(token(i)).rstrip(b'=').decode()}"


# ---- databases ----

class Database:
    """A fresh database with `rows` sessions; ids 1..CREDENTIAL_COUNT are valid and used."""

    def __init__(self, kind, rows, expired=0):
        self.kind = kind
        self.name = f"wsbench_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
        if kind == "pg":
            psql("postgres", f"CREATE DATABASE {self.name}")
            self.url = f"{PG}/{self.name}"
        else:
            self.dir = tempfile.mkdtemp(prefix="wsbench")
            self.path = os.path.join(self.dir, "bench.db")
            self.url = f"sqlite://{self.path}?mode=rwc"
        run([BIN, "migrate"], env=dict(os.environ, WEBSESSIONS_DATABASE_URL=self.url))
        self.seed(rows, expired)

    def seed(self, rows, expired):
        now = int(time.time())
        if self.kind == "pg":
            # Rows 1..rows are live; `expired` more rows after them idled out two hours ago.
            psql(self.name, f"""
                INSERT INTO sessions (id, token_hash, ip_address, user_id, kind, created_at,
                                      authenticated_at, last_activity_at, data)
                SELECT i, sha256(decode(md5(i::text), 'hex')), '127.0.0.1', NULL, 'browser',
                       {now}, NULL, CASE WHEN i <= {rows} THEN {now} ELSE {now - 7200} END, '{{}}'
                FROM generate_series(1, {rows + expired}) AS i;
                SELECT setval(pg_get_serial_sequence('sessions', 'id'), {rows + expired});""")
            # Steady state: no autovacuum or hint-bit writes on the fresh rows during a run.
            psql(self.name, "VACUUM ANALYZE sessions")
        else:
            db = sqlite3.connect(self.path)
            db.executemany(
                "INSERT INTO sessions (id, token_hash, ip_address, user_id, kind, created_at,"
                " authenticated_at, last_activity_at, data) VALUES (?, ?, '127.0.0.1', NULL,"
                " 'browser', ?, NULL, ?, '{}')",
                ((i, hashlib.sha256(token(i)).digest(), now, now if i <= rows else now - 7200)
                 for i in range(1, rows + expired + 1)))
            db.commit()
            db.close()

    def transactions(self):
        """Committed transactions so far (one per autocommit statement), PostgreSQL only."""
        return int(psql("postgres", f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{self.name}'"))

    def drop(self):
        if self.kind == "pg":
            psql("postgres", f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- the server ----

class Process:
    """A server process whose CPU time and peak memory can be read."""

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def wait_until_serving(self, path):
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=1)
                return
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)


class Server(Process):
    def __init__(self, db, **settings):
        self.port = free_port()
        env = dict(os.environ,
                   WEBSESSIONS_DATABASE_URL=db.url,
                   WEBSESSIONS_LISTEN=f"127.0.0.1:{self.port}",
                   WEBSESSIONS_HOUSEKEEPING_INTERVAL="1h",
                   # All of the benchmark's traffic comes from one address (R14).
                   WEBSESSIONS_SESSION_START_LIMIT="0",
                   WEBSESSIONS_LOGIN_LIMIT="0",
                   RUST_LOG="warn")
        env.update({f"WEBSESSIONS_{k.upper()}": v for k, v in settings.items()})
        self.env = env
        self.proc = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.wait_until_serving("/health/live")

    def pg_segments_out(self):
        """Data segments this server has sent to PostgreSQL, per open connection. Every
        round trip starts with one flush of the client's messages, so the growth of this
        count per request is the round trips per request (TCP_NODELAY; small messages)."""
        out = run(["ss", "-tinpH", "( dport = :5432 )"])
        counts, owner = {}, None
        for line in out.splitlines():
            if not line.startswith(("\t", " ")):
                fields = line.split()
                owner = fields[3] if f"pid={self.proc.pid}," in line else None
            elif owner is not None:
                for field in line.split():
                    if field.startswith("data_segs_out:"):
                        counts[owner] = int(field.split(":")[1])
        return counts

    def command(self, *args, stdin=""):
        return subprocess.run([BIN, *args], env=self.env, input=stdin, capture_output=True,
                              text=True, check=True).stdout

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=40)


class Peer(Process):
    """The peer (tests/bench/peer) on `db`'s database, with CREDENTIAL_COUNT sessions of its
    own; `credentials_file` holds their cookies (cookie `id`, path `/`)."""

    COOKIE = "id"
    PATH = "/"

    def __init__(self, db):
        cookies = run([PEER_BIN, "seed", db.url, str(CREDENTIAL_COUNT)])
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(cookies)
            self.credentials_file = f.name
        self.port = free_port()
        self.proc = subprocess.Popen([PEER_BIN, "serve", db.url, str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_until_serving(self.PATH)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=40)
        os.unlink(self.credentials_file)


# ---- load ----

def wrk(port, credentials_file, path="/v1/session", duration=DURATION_S, cookie=None):
    env = dict(os.environ, CREDENTIALS=credentials_file, BENCH_PATH=path)
    if cookie:
        env["COOKIE_NAME"] = cookie
    out = run(["wrk", "-t2", "-c32", f"-d{duration}s", "-s", os.path.join(HERE, "recognise.lua"),
               f"http://127.0.0.1:{port}{path}"], env=env)
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    r = json.loads(line[6:])
    return {
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "non2xx": r["non2xx"] + r["socket_errors"],
        "requests": r["requests"],
    }


class Nginx:
    """tests/gateway/nginx.conf in front of `servers` (the application upstream unused)."""

    def __init__(self, servers):
        self.dir = tempfile.mkdtemp(prefix="wsnginx")
        self.port = free_port()
        with open(os.path.join(ROOT, "tests", "gateway", "nginx.conf")) as f:
            config = f.read()
        upstreams = "\n        ".join(f"server 127.0.0.1:{s.port};" for s in servers)
        config = (config.replace("${DIR}", self.dir).replace("${WEBSESSIONS_SERVERS}", upstreams)
                  .replace("${APPLICATION}", f"127.0.0.1:{free_port()}")
                  .replace("${LISTEN}", f"127.0.0.1:{self.port}"))
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(config)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen([nginx, "-p", self.dir, "-c", path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def through_nginx(servers, nginx, credentials_file):
    """Like `measure`, through nginx: the CPU is the websessions processes' and nginx's."""
    wrk(nginx.port, credentials_file, duration=WARMUP_S)
    parts = [*servers, nginx]
    cpu0, t0 = [p.cpu_seconds() for p in parts], time.time()
    result = wrk(nginx.port, credentials_file)
    spent = [p.cpu_seconds() - c for p, c in zip(parts, cpu0)]
    elapsed = time.time() - t0
    result["cpu"] = sum(spent) / elapsed
    result["cpu_us"] = result["cpu"] / result["rps"] * 1e6
    result["nginx_cpu"] = spent[-1] / elapsed
    result["rss_mib"] = max(s.peak_rss_mib() for s in servers)
    return result


def measure(server, credentials_file, db=None, path="/v1/session", during=None, cookie=None):
    """Warm up, then one measured wrk run with the server's CPU and peak RSS."""
    wrk(server.port, credentials_file, path, duration=WARMUP_S, cookie=cookie)
    before_tx = db.transactions() if db is not None and db.kind == "pg" else None
    before_segments = server.pg_segments_out() if before_tx is not None else None
    cpu0, t0 = server.cpu_seconds(), time.time()
    result = wrk(server.port, credentials_file, path, cookie=cookie)
    result["cpu"] = (server.cpu_seconds() - cpu0) / (time.time() - t0)
    result["cpu_us"] = result["cpu"] / result["rps"] * 1e6
    result["rss_mib"] = server.peak_rss_mib()
    if before_tx is not None:
        after = server.pg_segments_out()
        sent = sum(n - before_segments.get(socket, 0) for socket, n in after.items())
        result["round_trips"] = sent / result["requests"]
        time.sleep(1.5)  # PostgreSQL publishes a backend's counters when it goes idle
        result["stmts"] = (db.transactions() - before_tx) / result["requests"]
    return result


def pgbench(db, sql, rows):
    now = int(time.time())
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(sql)
    out = run(["pgbench", "-n", "-M", "prepared", "-c", "8", "-j", "2", "-T", str(DURATION_S),
               "-D", f"n={rows}", "-D", f"now={now}", "-D", f"idle={now - 1800}",
               "-D", f"abs={now - 43200}", "-f", f.name, db.url])
    os.unlink(f.name)
    tps = next(float(l.split("=")[1].split()[0]) for l in out.splitlines() if l.startswith("tps"))
    latency = next(float(l.split("=")[1].split()[0]) for l in out.splitlines()
                   if l.startswith("latency average"))
    return {"rps": tps, "p50_ms": latency, "p99_ms": float("nan"), "non2xx": 0,
            "cpu": float("nan"), "rss_mib": float("nan")}


# The hot path's SQL, as the server sends it (one read; a conditional touch past the interval).
# READ_SQL is the prebuilt statement of crates/infrastructure/src/sessions.rs (FIND_COLUMNS).
READ_SQL = """\\set id random(1, :n)
SELECT s.id, s.token_hash, s.ip_address, s.kind, s.user_id, s.created_at, s.authenticated_at, s.last_activity_at, u.username, u.superuser FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = :id;
"""
WRITE_SQL = """\\set id random(1, :n)
UPDATE sessions SET last_activity_at = :now WHERE id = :id
  AND token_hash = sha256(decode(md5(:id::text), 'hex')) AND token_hash IS NOT NULL
  AND last_activity_at >= :idle AND (created_at >= :abs OR authenticated_at >= :abs);
"""


def one_run(credentials_file):
    results = {}

    db = Database("pg", 10_000)
    server = Server(db)
    results["floor"] = measure(server, credentials_file, path="/health/live")
    results["a-pg"] = measure(server, credentials_file, db)
    results["pg-read"] = pgbench(db, READ_SQL, CREDENTIAL_COUNT)
    results["pg-write"] = pgbench(db, WRITE_SQL, CREDENTIAL_COUNT)
    server.stop()

    peer = Peer(db)
    results["peer-pg"] = measure(peer, peer.credentials_file, path=Peer.PATH, cookie=Peer.COOKIE)
    peer.stop()

    server = Server(db, touch_interval="0")
    results["b-pg"] = measure(server, credentials_file, db)
    server.stop()

    servers = [Server(db), Server(db)]
    nginx = Nginx(servers)
    results["f-nginx"] = through_nginx(servers, nginx, credentials_file)
    nginx.stop()
    for s in servers:
        s.stop()

    server = Server(db)
    server.command("user", "create", "bench", stdin="bench password 123\n")
    logins = subprocess.Popen(
        ["wrk", "-t1", "-c4", f"-d{WARMUP_S + DURATION_S + 1}s", "-s",
         os.path.join(HERE, "login.lua"), f"http://127.0.0.1:{server.port}/v1/session/login"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    results["c-pg"] = measure(server, credentials_file, db)
    login_out = logins.communicate()[0]
    results["c-pg"]["logins_per_s"] = next(
        (float(l.split(":")[1]) for l in login_out.splitlines() if l.startswith("Requests/sec")), 0.0)
    server.stop()
    db.drop()

    db = Database("sqlite", 10_000)
    server = Server(db)
    results["a-sqlite"] = measure(server, credentials_file)
    results["floor-sqlite"] = measure(server, credentials_file, path="/health/live")
    server.stop()
    peer = Peer(db)
    results["peer-sqlite"] = measure(peer, peer.credentials_file, path=Peer.PATH,
                                     cookie=Peer.COOKIE)
    peer.stop()
    db.drop()

    db = Database("pg", 1_000_000)
    server = Server(db)
    results["d-1m"] = measure(server, credentials_file, db)
    server.stop()
    db.drop()

    db = Database("pg", 10_000, expired=1_000_000)
    server = Server(db)
    purge = {}

    def purge_now():
        t0 = time.time()
        out = server.command("purge")
        purge["seconds"] = time.time() - t0
        purge["deleted"] = int(out.strip())

    thread = threading.Thread(target=purge_now)
    wrk(server.port, credentials_file, duration=WARMUP_S)
    thread.start()
    results["e-purge"] = measure(server, credentials_file)
    thread.join()
    results["e-purge"].update(purge_s=purge["seconds"], purged=purge["deleted"])
    server.stop()
    db.drop()
    return results


ROWS = [
    ("floor", "GET /health/live (HTTP floor)", None),
    ("pg-read", "pgbench read (DB limit)", None),
    ("pg-write", "pgbench touch (DB limit)", None),
    ("a-pg", "(a) recognition, PostgreSQL", ("pg-read", "rps", ">=", 0.40)),
    ("a-sqlite", "(a) recognition, SQLite", ("floor-sqlite", "rps", ">=", 0.20)),
    ("b-pg", "(b) touch_interval=0, PostgreSQL", ("pg-write", "rps", ">=", 0.75)),
    ("c-pg", "(c) (a) + 4 clients logging in", ("a-pg", "p99_ms", "<=", 2.0)),
    ("d-1m", "(d) (a) with 1M sessions", ("a-pg", "rps", ">=", 0.90)),
    ("e-purge", "(e) (a) while purging 1M rows", ("a-pg", "p99_ms", "<", 3.0)),
    ("f-nginx", "(f) (a) through nginx to 2 processes", None),
    ("floor-sqlite", "GET /health/live on SQLite (HTTP floor)", None),
    ("peer-pg", "peer: axum + tower-sessions 0.14, PostgreSQL", None),
    ("peer-sqlite", "peer: axum + tower-sessions 0.14, SQLite", None),
]

# Each row's HTTP floor: the same database's GET /health/live.
FLOOR = {key: ("floor-sqlite" if "sqlite" in key else "floor") for key, _, _ in ROWS}

# Issue 14's targets: (label, key, field, op, base key, bound).
TARGETS = [
    ("recognition CPU per request, PostgreSQL", "a-pg", "cpu_us", "<=", "floor", 2.5),
    ("recognition CPU per request, SQLite", "a-sqlite", "cpu_us", "<=", "floor-sqlite", 2.5),
    ("recognition requests/s vs the peer, PostgreSQL", "a-pg", "rps", ">=", "peer-pg", 1.3),
    ("recognition requests/s vs the peer, SQLite", "a-sqlite", "rps", ">=", "peer-sqlite", 1.3),
]


def median(runs, key, field):
    values = [r[key][field] for r in runs if field in r[key]]
    return statistics.median(values) if values else float("nan")


def table(runs):
    lines = [
        "| target | requests/s | p50 ms | p99 ms | non-2xx | server CPU (cores) | server CPU us/request | x floor's CPU/request | peak RSS MiB | statements/request | round trips/request | ratio to baseline | target met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label, target in ROWS:
        m = {f: median(runs, key, f)
             for f in ("rps", "p50_ms", "p99_ms", "non2xx", "cpu", "cpu_us", "rss_mib", "stmts",
                       "round_trips")}
        floor_ratio = m["cpu_us"] / median(runs, FLOOR[key], "cpu_us")
        ratio, met = "", ""
        if target:
            base_key, field, op, bound = target
            ratio_value = m[field] / median(runs, base_key, field)
            ok = {">=": ratio_value >= bound, "<=": ratio_value <= bound, "<": ratio_value < bound}[op]
            ratio = f"{ratio_value:.2f} x {base_key} {field} (target {op} {bound})"
            met = "yes" if ok and m["rss_mib"] < 64 else "NO"
        lines.append(
            f"| {label} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['non2xx']:.0f} | "
            f"{m['cpu']:.2f} | {m['cpu_us']:.1f} | {floor_ratio:.2f} | {m['rss_mib']:.1f} | "
            f"{m['stmts']:.2f} | {m['round_trips']:.2f} | {ratio} | {met} |")
    lines += ["", "| issue 14 target | measured | target | met |", "|---|---|---|---|"]
    for label, key, field, op, base_key, bound in TARGETS:
        value = median(runs, key, field) / median(runs, base_key, field)
        ok = value <= bound if op == "<=" else value >= bound
        lines.append(f"| {label} | {value:.2f} x {base_key} {field} | {op} {bound} | "
                     f"{'yes' if ok else 'NO'} |")
    extra = [
        f"- logins/s during (c): {median(runs, 'c-pg', 'logins_per_s'):.1f}",
        f"- purge during (e): {median(runs, 'e-purge', 'purged'):.0f} rows in {median(runs, 'e-purge', 'purge_s'):.1f} s",
        f"- SQLite HTTP floor: {median(runs, 'floor-sqlite', 'rps'):.0f} requests/s",
        f"- (f): {median(runs, 'f-nginx', 'rps') / median(runs, 'a-pg', 'rps'):.2f} x (a)'s requests/s, "
        f"p99 {median(runs, 'f-nginx', 'p99_ms') / median(runs, 'a-pg', 'p99_ms'):.2f} x (a)'s; "
        f"its CPU is both processes' and nginx's ({median(runs, 'f-nginx', 'nginx_cpu'):.2f} cores of it nginx's)",
        f"- medians of {len(runs)} run(s); wrk -t2 -c32, {WARMUP_S} s warm-up, {DURATION_S} s measured, "
        f"{CREDENTIAL_COUNT} credentials; peak RSS is the server's VmHWM; statements/request is "
        "PostgreSQL's committed-transaction count per request (every statement autocommits); "
        "round trips/request is the data segments the server sent to PostgreSQL per request "
        "(each round trip begins with one flush)",
    ]
    return "\n".join(lines + [""] + extra)


def compare(other, runs, credentials_file):
    """Recognition's CPU per request (PostgreSQL and SQLite) and the HTTP floor, for this
    build and `other`, measured in turns within one run, so that the machine's speed, which
    varies from day to day, is the same for both."""
    global BIN
    this = BIN
    results = {"this": [], "other": []}
    for n in range(runs):
        for name, binary in (("this", this), ("other", other)):
            print(f"round {n + 1} of {runs}: {name} ...", file=sys.stderr)
            BIN = binary
            round_results = {}
            db = Database("pg", 10_000)
            server = Server(db)
            round_results["floor"] = measure(server, credentials_file, path="/health/live")
            round_results["a-pg"] = measure(server, credentials_file, db)
            server.stop()
            db.drop()
            db = Database("sqlite", 10_000)
            server = Server(db)
            round_results["a-sqlite"] = measure(server, credentials_file)
            server.stop()
            db.drop()
            results[name].append(round_results)
    BIN = this
    lines = [f"this: {this}", f"other: {other}", "",
             "| scenario | this us/request | other us/request | this / other | this req/s | other req/s |",
             "|---|---|---|---|---|---|"]
    for key in ("floor", "a-pg", "a-sqlite"):
        mine = median(results["this"], key, "cpu_us")
        theirs = median(results["other"], key, "cpu_us")
        lines.append(f"| {key} | {mine:.1f} | {theirs:.1f} | {mine / theirs:.3f} | "
                     f"{median(results['this'], key, 'rps'):.0f} | {median(results['other'], key, 'rps'):.0f} |")
    lines.append("")
    lines.append(f"medians of {runs} round(s), taken in turns; wrk -t2 -c32, {WARMUP_S} s warm-up, "
                 f"{DURATION_S} s measured")
    return "\n".join(lines), results


def instructions_per_request(binary, kind, requests=2000, cookie_name="__Host-websession"):
    """Instructions the server executes per recognition (`GET /v1/session` with a valid
    cookie, one request at a time over one keep-alive connection), counted by callgrind:
    unlike CPU time on this machine, the count repeats from run to run."""
    global BIN
    saved, BIN = BIN, binary
    db = Database(kind, 1000)
    BIN = saved
    port = free_port()
    out_dir = tempfile.mkdtemp(prefix="wscallgrind")
    out = os.path.join(out_dir, "callgrind.out")
    env = dict(os.environ, WEBSESSIONS_DATABASE_URL=db.url, WEBSESSIONS_LISTEN=f"127.0.0.1:{port}",
               WEBSESSIONS_HOUSEKEEPING_INTERVAL="1h", WEBSESSIONS_SESSION_START_LIMIT="0",
               WEBSESSIONS_LOGIN_LIMIT="0", RUST_LOG="warn")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                             f"--callgrind-out-file={out}", binary, "serve"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import http.client
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                raise
            time.sleep(0.2)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def recognise(i):
        connection.request("GET", "/v1/session",
                           headers={"Cookie": f"{cookie_name}={credential(1 + i % CREDENTIAL_COUNT)}"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status

    for i in range(200):
        recognise(i)
    run(["callgrind_control", "-i", "on", str(proc.pid)])
    for i in range(requests):
        recognise(i)
    run(["callgrind_control", "-i", "off", str(proc.pid)])
    run(["callgrind_control", "-d", str(proc.pid)])
    proc.terminate()
    proc.wait(timeout=60)
    total = 0
    for name in os.listdir(out_dir):
        with open(os.path.join(out_dir, name)) as f:
            for line in f:
                if line.startswith("totals:"):
                    total += int(line.split()[1])
                    break
    shutil.rmtree(out_dir, ignore_errors=True)
    db.drop()
    return total / requests


def compare_instructions(other):
    """This build's instructions per recognition against `other`'s, on PostgreSQL and SQLite."""
    lines = [f"this: {BIN}", f"other: {other}", "",
             "| database | this instructions/request | other | this / other |", "|---|---|---|---|"]
    raw = {}
    for kind in ("pg", "sqlite"):
        mine = instructions_per_request(BIN, kind)
        theirs = instructions_per_request(other, kind)
        raw[kind] = {"this": mine, "other": theirs}
        lines.append(f"| {kind} | {mine:.0f} | {theirs:.0f} | {mine / theirs:.3f} |")
    lines.append("")
    lines.append("callgrind, one request at a time over one keep-alive connection, 2000 "
                 "recognitions after 200 to warm up; every thread of the server counted")
    return "\n".join(lines), raw


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", metavar="OTHER_BINARY",
                        help="only recognition's CPU per request, this build against another's, in turns")
    parser.add_argument("--instructions", metavar="OTHER_BINARY",
                        help="recognition's instructions per request (callgrind), this build against another's")
    args = parser.parse_args()
    ensure_tools()
    if args.instructions:
        if not os.environ.get("BENCH_BIN"):
            build()
        report, raw = compare_instructions(os.path.abspath(args.instructions))
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = os.path.join(HERE, "results", f"{stamp}-instructions.md")
        with open(path, "w") as f:
            f.write(f"# websessions recognition, instructions per request {stamp}\n\n{report}\n")
        print(report)
        print(f"\nwritten to {os.path.relpath(path, ROOT)}")
        return
    if args.compare:
        if not os.environ.get("BENCH_BIN"):
            build()
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(credential(i) for i in range(1, CREDENTIAL_COUNT + 1)) + "\n")
            credentials_file = f.name
        report, raw = compare(os.path.abspath(args.compare), args.runs, credentials_file)
        os.unlink(credentials_file)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = os.path.join(HERE, "results", f"{stamp}-compare.md")
        with open(path, "w") as f:
            f.write(f"# websessions recognition, two builds compared {stamp}\n\n{report}\n\n"
                    "<details><summary>raw runs</summary>\n\n```json\n"
                    + json.dumps(raw, indent=1) + "\n```\n</details>\n")
        print(report)
        print(f"\nwritten to {os.path.relpath(path, ROOT)}")
        return
    if not os.environ.get("BENCH_BIN"):
        build()
    build_peer()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(credential(i) for i in range(1, CREDENTIAL_COUNT + 1)) + "\n")
        credentials_file = f.name
    runs = []
    for n in range(args.runs):
        print(f"run {n + 1} of {args.runs} ...", file=sys.stderr)
        runs.append(one_run(credentials_file))
    os.unlink(credentials_file)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report = (f"# websessions benchmark {stamp}\n\n"
              f"Machine: {os.cpu_count()} cores; "
              + (f"binary {os.environ['BENCH_BIN']}" if os.environ.get("BENCH_BIN")
                 else f"commit {run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT).strip()}")
              + "\n\n"
              + table(runs) + "\n\n<details><summary>raw runs</summary>\n\n```json\n"
              + json.dumps(runs, indent=1) + "\n```\n</details>\n")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", f"{stamp}.md")
    with open(path, "w") as f:
        f.write(report)
    print(table(runs))
    print(f"\nwritten to {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
