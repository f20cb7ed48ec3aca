#!/usr/bin/env bash
# How many files adding an endpoint touches (issue 19; at most 5). A recorded change,
# count-my-sessions.patch (GET /v1/me/sessions/count: the domain's operation, the handler
# with its error type, and a route test), is applied to this checkout, which is then built,
# its OpenAPI document regenerated and the new test run; the files that differ from HEAD are
# counted, and the checkout is put back as it was. It needs a checkout without changes (CI's
# clean clone; run it last, since what it builds is rebuilt afterwards). It fails when the
# change touches more than 5 files, or no longer applies or builds: then the code changed
# under it, and the change is recorded again (make the endpoint by hand on a clean checkout,
# `git diff -- crates > tests/endpoint/count-my-sessions.patch`; the document is regenerated
# here).
#
# It builds in place rather than in a worktree: cargo names a workspace member's artifacts by
# its path relative to the workspace, so a worktree sharing target/ would overwrite this
# checkout's artifacts with its own, and cargo would then take them for up to date.
set -euo pipefail
most=5
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
if [ -n "$(git status --porcelain)" ]; then
  echo "tests/endpoint/count.sh needs a checkout without changes (commit or stash them)" >&2
  exit 1
fi
restore() { git checkout -q -- . && git clean -q -fd -- crates openapi; }
trap restore EXIT
git apply tests/endpoint/count-my-sessions.patch
cargo run -q -p websessions-api -- openapi > openapi/openapi.json
cargo test -q -p websessions-api --lib counting_my_sessions_needs_a_logged_in_user
git status --porcelain
touched=$(git status --porcelain | wc -l)
echo "adding an endpoint touches $touched files (at most $most)"
[ "$touched" -le "$most" ]
