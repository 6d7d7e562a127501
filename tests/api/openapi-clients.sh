#!/usr/bin/env bash
# The OpenAPI document as provisioning users meet it (issue 25):
#   1. openapi-spec-validator (PyPI) validates it;
#   2. Spectral's `oas` ruleset (npm) lints it, failing on any warning
#      (tests/api/clients/.spectral.yaml turns rules off only with a reason);
#   3. openapi-python-client generates a Python client, with no warning, and
#      tests/api/clients/provision.py provisions the seed's two relays through it against a
#      real Postern, reads them back and relays a message each seed way (aiosmtpd as the
#      smart host, tracking read through the client);
#   4. openapi-typescript generates TypeScript types, tsc type-checks
#      tests/api/clients/provision.ts against them, and node runs it against the same server.
# The document comes from `postern openapi`, which is what /api/v1/openapi.json serves.
#
#   tests/api/openapi-clients.sh [path/to/postern]   (default: target/release/postern)
#
# Needs python3 (venv), node and npm, Postgres on $PGHOST:$PGPORT (127.0.0.1:5432, trust).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
clients=$repo/tests/api/clients

POSTERN=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/release/postern}")
work=$(realpath -m "${CARGO_TARGET_DIR:-target}/openapi-clients")
venv=$work/venv
mkdir -p "$work"

if [ ! -x "$venv/bin/openapi-python-client" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        openapi-spec-validator==0.9.0 openapi-python-client==0.29.1 ruff==0.17.6 aiosmtpd==1.4.6
fi
export PATH=$venv/bin:$PATH

"$POSTERN" openapi > "$work/openapi.json"

echo "== openapi-spec-validator"
openapi-spec-validator "$work/openapi.json"

echo "== npm packages (Spectral, openapi-typescript, openapi-fetch, TypeScript)"
cp "$clients/package.json" "$clients/package-lock.json" "$clients/tsconfig.json" "$clients/provision.ts" "$work/"
(cd "$work" && npm ci --no-audit --no-fund --loglevel=error --ignore-scripts)

echo "== Spectral (oas)"
(cd "$work" && npx --no-install spectral lint --fail-severity=warn -r "$clients/.spectral.yaml" openapi.json)

echo "== openapi-python-client"
rm -rf "$work/python-client"
(cd "$work" && openapi-python-client generate --path openapi.json --output-path python-client \
    --config "$clients/openapi-python-client.yaml" > generate.log 2>&1) || { cat "$work/generate.log"; exit 1; }
if grep -qi "warning\|error" "$work/generate.log"; then
    echo "openapi-python-client reported problems:" >&2
    cat "$work/generate.log" >&2
    exit 1
fi
pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$work/python-client"

echo "== openapi-typescript + tsc"
(cd "$work" && npx --no-install openapi-typescript openapi.json -o api.d.ts && npx --no-install tsc -p .)

# A real Postern on a fresh database for both clients.
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
database=postern_clients_$$
psql -qAt -d postgres -c "create database $database"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port) anon_port=$(free_port) auth_port=$(free_port) sink_port=$(free_port)
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$database?sslmode=disable"
export POSTERN_HTTP_ADDR=127.0.0.1:$http_port POSTERN_HOSTNAME=relay.test POSTERN_LOG_LEVEL=warn
cleanup() {
    [ -n "${server_pid:-}" ] && kill "$server_pid" 2> /dev/null && wait "$server_pid" 2> /dev/null
    psql -qAt -d postgres -c "drop database if exists $database with (force)" > /dev/null || true
}
trap cleanup EXIT
token=$("$POSTERN" api-token new --name clients --scope write | grep '^pst_')
"$POSTERN" serve > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do "$POSTERN" healthcheck > /dev/null 2>&1 && break; sleep 0.2; done
url=http://127.0.0.1:$http_port

echo "== the generated Python client provisions the seed and relays"
python "$clients/provision.py" "$url" "$token" "$anon_port" "$auth_port" "$sink_port"
echo "== the typed TypeScript script provisions the seed again (idempotent PUTs)"
node "$work/build/provision.js" "$url" "$token" "$anon_port" "$auth_port" "$sink_port"
