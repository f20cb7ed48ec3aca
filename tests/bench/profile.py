#!/usr/bin/env python3
"""Where the server's CPU goes on the hot path: `perf record` of the release binary under wrk.

Run with `python3 tests/bench/profile.py [--seconds 8]` (needs `perf`, and what bench.py
needs). For `GET /health/live` (the HTTP floor) and `GET /v1/session` on PostgreSQL and on
SQLite (10 thousand sessions, 300 credentials, the default touch interval, wrk -t2 -c32 as in
bench.py) it samples the server's threads at 999 Hz while wrk runs, and prints the server's
CPU per request and the hottest symbols, self time, grouped into: the kernel (network and
scheduling), the async runtime, HTTP (hyper, poem), the database driver (sqlx, SQLite), the
allocator, and websessions' own code. The findings are summarised in tests/bench/profile.md.
"""

import argparse
import collections
import os
import re
import subprocess
import tempfile
import threading
import time

import bench

GROUPS = [
    ("kernel", re.compile(r"^\[k\]|\[kernel")),
    ("allocator", re.compile(r"malloc|free|realloc|_int_|cfree|calloc|memcpy|memmove|memset")),
    ("sqlite (C)", re.compile(r"^sqlite3|sqlite3_|libsqlite3")),
    ("sqlx / sea-orm", re.compile(r"sqlx|sea_orm|sea_query")),
    ("runtime (tokio)", re.compile(r"tokio|mio::|parking_lot|crossbeam|std::sync|futex")),
    ("http (hyper, poem)", re.compile(r"hyper|poem|http::|httparse|h2::|bytes::")),
    ("serde / json", re.compile(r"serde|json")),
    ("metrics / tracing", re.compile(r"prometheus|tracing")),
    ("websessions", re.compile(r"websessions")),
]


def group_of(symbol):
    for name, pattern in GROUPS:
        if pattern.search(symbol):
            return name
    return "other"


def profile(server, credentials_file, path, seconds):
    """Samples `server` under wrk on `path`; (CPU µs per request, {symbol: share})."""
    data = tempfile.mktemp(suffix=".perf")
    env = dict(os.environ, CREDENTIALS=credentials_file, BENCH_PATH=path)
    load = subprocess.Popen(
        ["wrk", "-t2", "-c32", f"-d{seconds + 4}s", "-s", os.path.join(bench.HERE, "recognise.lua"),
         f"http://127.0.0.1:{server.port}{path}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(2)
    cpu0, t0 = server.cpu_seconds(), time.time()
    subprocess.run(["perf", "record", "-q", "-F", "999", "-p", str(server.proc.pid), "-o", data,
                    "--", "sleep", str(seconds)], check=True, capture_output=True)
    cpu = server.cpu_seconds() - cpu0
    elapsed = time.time() - t0
    out = load.communicate()[0]
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    r = __import__("json").loads(line[6:])
    rps = r["requests"] / (r["duration_us"] / 1e6)
    report = subprocess.run(
        ["perf", "report", "-i", data, "--no-children", "--sort", "symbol", "--stdio",
         "--percent-limit", "0.2"], check=True, capture_output=True, text=True).stdout
    os.unlink(data)
    shares = {}
    for row in report.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\[.\])\s+(.*)", row)
        if m:
            shares[f"{m.group(2)} {m.group(3).strip()}"] = float(m.group(1))
    return cpu / elapsed / rps * 1e6, rps, shares


def show(name, us, rps, shares):
    print(f"\n## {name}: {rps:,.0f} requests/s, server CPU {us:.1f} us per request")
    groups = collections.Counter()
    for symbol, share in shares.items():
        groups[group_of(symbol)] += share
    print("by group (self time, % of samples; symbols under 0.2% are left out):")
    for group, share in groups.most_common():
        print(f"  {share:5.1f}%  {group}")
    print("hottest symbols:")
    for symbol, share in sorted(shares.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {share:5.1f}%  {symbol[:150]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    bench.ensure_tools()
    if not os.environ.get("BENCH_BIN"):
        bench.build()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(bench.credential(i) for i in range(1, bench.CREDENTIAL_COUNT + 1)) + "\n")
        credentials_file = f.name
    for kind in ("pg", "sqlite"):
        db = bench.Database(kind, 10_000)
        server = bench.Server(db)
        if kind == "pg":
            show("floor: GET /health/live", *profile(server, credentials_file, "/health/live",
                                                       args.seconds))
        show(f"recognition on {kind}", *profile(server, credentials_file, "/v1/session",
                                                   args.seconds))
        server.stop()
        db.drop()
    os.unlink(credentials_file)


if __name__ == "__main__":
    main()
