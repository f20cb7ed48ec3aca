#!/usr/bin/env python3
"""The PostgreSQL plans of every statement maintenance runs (R8), with a million rows.

Seeds a fresh database with 1,000,000 sessions (valid ones, idle-expired ones, absolutely
expired anonymous and logged-in ones), 1,000,000 recorded failures (of names with and without
an account, some locked) and their lockouts, then runs `websessions purge` with PostgreSQL's
`auto_explain` logging the plan of every statement the binary sends (EXPLAIN ANALYZE, with
the real parameters), and prints those plans. Every maintenance statement must walk an index:
the script fails if any plan has a sequential scan.

Usage: python3 tests/bench/explain_maintenance.py [--keep]   (needs the release binary, the
local PostgreSQL with trust auth for `postgres`, and read access to its server log).
"""

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target", "release", "websessions")
PG = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
LOG = os.environ.get("BENCH_POSTGRES_LOG", "/var/log/postgresql/postgresql-15-main.log")
ROWS = 1_000_000


def psql(db, sql):
    return subprocess.run(["psql", f"{PG}/{db}", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def seed(db, now):
    # Sessions: 70% valid, 10% idle-expired, 10% anonymous past the absolute limit while
    # active, 10% logged in more than 12 h ago and active since.
    psql(db, f"""
        INSERT INTO users (username, password_hash, superuser, disabled, created_at,
                           password_changed_at)
        SELECT 'user' || i, 'x', false, false, {now}, {now} FROM generate_series(1, 1000) i;
        INSERT INTO sessions (token_hash, ip_address, user_id, kind, created_at,
                              authenticated_at, last_activity_at, data)
        SELECT sha256(int8send(i)), '127.0.0.1',
               CASE WHEN i % 10 = 9 THEN 1 + i % 1000 END,
               'browser',
               CASE WHEN i % 10 IN (8, 9) THEN {now} - 50000 ELSE {now} - 60 END,
               CASE WHEN i % 10 = 9 THEN {now} - 45000 END,
               CASE WHEN i % 10 = 7 THEN {now} - 7200 ELSE {now} - 10 END,
               '{{}}'
        FROM generate_series(1, {ROWS}) i;
        INSERT INTO login_failures (username, failure_count, last_failure_at)
        SELECT CASE WHEN i <= 1000 THEN 'user' || i ELSE 'ghost' || i END, 1 + i % 9,
               {now} - i % 3600
        FROM generate_series(1, {ROWS}) i;
        INSERT INTO account_lockouts (username, locked_until)
        SELECT 'ghost' || i, CASE WHEN i % 2 = 0 THEN {now} + 600 ELSE {now} - 600 END
        FROM generate_series(1001, 101000) i;""")
    psql(db, "VACUUM ANALYZE")


def plans_since(offset):
    with open(LOG, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        text = f.read()
    plans = []
    for block in re.split(r"\n(?=\S+ \S+ \S+ \[\d+\])", text):
        if "duration:" in block and "plan:" in block:
            plans.append(block[block.index("Query Text:"):].rstrip())
    return plans


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    name = f"wsexplain_{os.getpid()}"
    psql("postgres", f"CREATE DATABASE {name}")
    url = f"{PG}/{name}"
    try:
        env = dict(os.environ, WEBSESSIONS_DATABASE_URL=url)
        subprocess.run([BIN, "migrate"], env=env, check=True, capture_output=True)
        now = int(time.time())
        print(f"seeding {ROWS} sessions and {ROWS} failures ...", file=sys.stderr)
        seed(name, now)
        for setting in ["session_preload_libraries = 'auto_explain'",
                        "auto_explain.log_min_duration = 0",
                        "auto_explain.log_analyze = on",
                        "auto_explain.log_timing = on"]:
            psql("postgres", f"ALTER DATABASE {name} SET {setting}")
        offset = os.path.getsize(LOG)
        out = subprocess.run([BIN, "purge"], env=env, check=True, capture_output=True, text=True)
        time.sleep(1)
        plans = [p for p in plans_since(offset) if "sessions" in p or "login_failures" in p
                 or "account_lockouts" in p]
        deleted = out.stdout.strip()
        seen = set()
        for plan in plans:
            query = plan.splitlines()[0]
            shape = re.sub(r"\$\d+(, \$\d+)*", "$n", query)
            if shape in seen:
                continue  # the same statement for the next batch
            seen.add(shape)
            # A batch's key list says nothing about the plan: shorten it.
            plan = re.sub(r"\$1(, \$\d+)+", "$1, ..., $1000", plan)
            plan = re.sub(r"'\{[^}]{60,}\}'", "'{...}'", plan)
            print(plan)
            print()
        scans = [p for p in plans if "Seq Scan" in p]
        print(f"purge deleted {deleted} rows; {len(plans)} statements, "
              f"{len(seen)} distinct; sequential scans: {len(scans)}")
        if scans:
            sys.exit("a maintenance statement scans a table")
    finally:
        if not args.keep:
            psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
