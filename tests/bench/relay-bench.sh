#!/usr/bin/env bash
# Throughput benchmark: Postern vs Postfix vs the direct path, on loopback.
#
#   smtp-source --> relay on 127.0.0.1:2525 --> smtp-sink on 127.0.0.1:2626
#
# Uses the shared harness (../shared/bench/relay-bench.sh, mode `custom`) so Postern,
# Postfix and the direct path are measured in the same run on the same machine state.
# Postern runs exactly as a newcomer would: the release binary, the embedded PostgreSQL
# in a fresh data directory per run (fsync on, 250 only after commit), configured with
# the CLI. Needs: postfix (smtp-source, smtp-sink), python3; run as root (cgroups).
#
#   tests/bench/relay-bench.sh                     # N=10000, 10 KiB, 1 / 10 / 50 sessions
#   N=2000 SESSIONS="50" tests/bench/relay-bench.sh
#
# BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432 runs Postern against that server
# instead (a fresh database per run; the last run's is dropped first): over TCP, with TLS unless the URL
# says sslmode=disable (sqlx's default is prefer, and Debian's cluster offers TLS), the
# set-up of a production node with a separate or managed Postgres.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
harness=${HARNESS:-$repo/../shared/bench/relay-bench.sh}
[ -x "$harness" ] || [ -f "$harness" ] || { echo "harness not found: $harness (set HARNESS=)" >&2; exit 1; }

(cd "$repo" && cargo build --release --quiet --bin postern)
export POSTERN_BIN=$repo/target/release/postern

# One relay run: configure a fresh embedded database with the CLI, then serve.
export RELAY_NAME=postern
export RELAY_CMD='
set -e
export POSTERN_DATA_DIR=$RB_SPOOL/postern POSTERN_HTTP_ADDR=127.0.0.1:0 POSTERN_LOG_LEVEL=warn
chmod 755 "$RB_SPOOL"
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
    db=postern_bench_$$
    server=${BENCH_DATABASE_URL%%\?*}; query=${BENCH_DATABASE_URL#"$server"}
    for old in $(psql -Atq "$server/postgres" -c "select datname from pg_database where datname like 'postern_bench_%'"); do
        psql -q "$server/postgres" -c "drop database $old"
    done
    psql -q "$server/postgres" -c "create database $db"
    export DATABASE_URL=$server/$db$query
fi
"$POSTERN_BIN" receive-connector new --name bench --bindings "$RB_LISTEN" --remote-ip-ranges 127.0.0.0/8 \
    --permission-groups anonymous --accept-any-recipient true --max-connections-per-source 1000 > /dev/null
"$POSTERN_BIN" send-connector new --name sink --address-spaces "*" --smart-hosts "$RB_UPSTREAM" --tls-policy none > /dev/null
exec "$POSTERN_BIN" serve'

export N=${N:-10000} SIZES=${SIZES:-10240} SESSIONS=${SESSIONS:-"1 10 50"} REPEATS=${REPEATS:-1}
exec bash "$harness" direct postfix custom
