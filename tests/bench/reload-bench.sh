#!/usr/bin/env bash
# Live-configuration benchmark: time from a committed change (plain SQL on the
# receive_connectors table) to the new rule being enforced on a new connection, p50 and
# p99 over ROUNDS changes (tests/src/bin/reload-bench.rs). Uses the Postgres server on
# 127.0.0.1:5432 (a scratch database, dropped afterwards) and the release binary.
#
#   tests/bench/reload-bench.sh           # ROUNDS=100
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-100} PG=${PG:-postgres://postgres@127.0.0.1:5432} LISTEN=127.0.0.1:2525
db=postern_reload_bench_$$
(cd "$repo" && cargo build --release --quiet --bin postern -p postern && cargo build --release --quiet --bin reload-bench -p postern-tests)
bin=$repo/target/release
psql -q "$PG/postgres" -c "create database $db"
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    psql -q "$PG/postgres" -c "drop database if exists $db with (force)"
}
trap cleanup EXIT
export DATABASE_URL=$PG/$db POSTERN_HTTP_ADDR=127.0.0.1:0 POSTERN_LOG_LEVEL=warn
"$bin/postern" receive-connector new --name bench --bindings "$LISTEN" --remote-ip-ranges 127.0.0.2 \
    --permission-groups anonymous > /dev/null
"$bin/postern" serve & server=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break; sleep 0.1; done
printf '# %s  %s cores\n' "$(date -u +%FT%TZ)" "$(nproc)"
"$bin/reload-bench" --database-url "$DATABASE_URL" --smtp "$LISTEN" --rounds "$ROUNDS"
