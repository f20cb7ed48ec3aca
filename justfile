# Recipes for websessions. `just --list` shows them.

pg_url := "postgres://postgres@127.0.0.1:5432/postgres"
mysql_url := "mysql://root@127.0.0.1:3306/mysql"

# Run every test (the contract suite on SQLite, plus PostgreSQL/MariaDB when their URLs are set).
test:
    cargo test --workspace

# Run one crate's tests, e.g. `just test-crate websessions-domain`.
test-crate NAME:
    cargo test -p {{NAME}}

# Run every test with the contract suite on SQLite, PostgreSQL and MariaDB (local servers).
test-all-backends:
    WEBSESSIONS_TEST_POSTGRES_URL={{pg_url}} WEBSESSIONS_TEST_MYSQL_URL={{mysql_url}} cargo test --workspace

# Format the code.
fmt:
    cargo fmt --all

# Lint everything, warnings as errors.
clippy:
    cargo clippy --workspace --all-targets -- -D warnings

# What CI runs: start the databases if needed, check formatting and lints, run every test.
ci:
    bash .ci/run

# Regenerate the committed OpenAPI document from the code.
openapi:
    cargo run -q -p websessions-api -- openapi > openapi/openapi.json

# Load benchmark of the hot path with its baselines (needs local PostgreSQL; installs wrk).
bench:
    python3 tests/bench/bench.py

# The edge's bounds under slow and stalled clients (R16): 2,000 half heads + 20 h2c x 100 stalled bodies.
bench-edge:
    python3 tests/bench/edge.py

# A database restart under wrk, on database servers of the script's own (root; PostgreSQL, MariaDB).
bench-restart:
    python3 tests/bench/restart.py

# What the audit trail costs (R19): a login storm and an operator's revocations over two
# processes on PostgreSQL; `just bench-audit --other BIN` compares with an earlier build.
bench-audit *ARGS:
    python3 tests/bench/audit.py {{ARGS}}
