#!/usr/bin/env bash
# Runs schemathesis (property-based API testing, from PyPI) against a real Postern on a
# fresh database, with the OpenAPI document the server publishes. Two checks:
#   not_a_server_error           no generated input may get a 5xx;
#   response_schema_conformance  every response matches what the document says.
# Exits non-zero on any failure; the report names a curl command that reproduces it.
# Left out: the endless SSE stream, and token revocation (the run would revoke its own
# token and test nothing after); both have black-box tests in tests/tests/.
#
#   tests/api/schemathesis.sh [path/to/postern [schemathesis options…]]
#       (default: target/release/postern; extra options narrow a run, e.g.
#        --include-operation-id putServiceAccount --report har --report-har-path /tmp/x.har)
#
# Needs python3 (with venv), Postgres on $PGHOST:$PGPORT (127.0.0.1:5432, trust auth).
set -euo pipefail
cd "$(dirname "$0")/../.."

POSTERN=${1:-${CARGO_TARGET_DIR:-target}/release/postern}
shift || true
SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-40}
work=$(realpath -m "${CARGO_TARGET_DIR:-target}/schemathesis")
venv=$work/venv
mkdir -p "$work"

if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
database=postern_schemathesis_$$
psql -qAt -d postgres -c "create database $database"
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$database?sslmode=disable"
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export POSTERN_HTTP_ADDR=127.0.0.1:$http_port POSTERN_HOSTNAME=relay.test POSTERN_LOG_LEVEL=warn

server_log=$work/server.log
cleanup() {
    [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    psql -qAt -d postgres -c "drop database if exists $database with (force)" || true
}
trap cleanup EXIT

# Scope admin: the administrator and API-token operations are part of the run too (a
# write token gets 403 from all eight).
token=$("$POSTERN" api-token new --name schemathesis --scope admin | grep '^pst_')
"$POSTERN" serve > "$server_log" 2>&1 &
server_pid=$!

export HYPOTHESIS_STORAGE_DIRECTORY=$work/hypothesis
status=0
(cd "$work" && timeout 1200 "$venv/bin/schemathesis" run \
    "http://127.0.0.1:$http_port/api/v1/openapi.json" \
    --wait-for-schema 60 \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$EXAMPLES" \
    --request-timeout 10 \
    --seed "${SCHEMATHESIS_SEED:-42}" \
    --workers 1 \
    --exclude-path /api/v1/tracking/stream \
    --exclude-path '/api/v1/api-tokens/{name}' \
    --generation-database none \
    --no-color \
    --report junit --report-junit-path "schemathesis-junit.xml" \
    "$@" < /dev/null) || status=$?

if grep -q "panicked" "$server_log"; then
    echo "schemathesis: the server panicked (see $server_log):" >&2
    grep -A3 "panicked" "$server_log" >&2
    status=1
fi
if [ "$status" -eq 0 ]; then
    echo "schemathesis: no failures (checks not_a_server_error, response_schema_conformance)"
else
    echo "schemathesis: FAILED (exit $status); server log: $server_log" >&2
fi
exit "$status"
