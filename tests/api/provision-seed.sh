#!/usr/bin/env bash
# Sets up the seed's two relays with curl alone, through Postern's REST API: the
# accepted domain, a smart host, the anonymous "SMTP Relay Script" connector (PART 1),
# the authenticated "SMTP Auth Relay Script" connector, the service account svc-mailer
# and its Send-As grant on smb1 (PART 2). Every call is a PUT, so running the script
# again changes nothing and creates no duplicates. It stops at the first refused call
# and prints the problem document the server sent.
#
#   POSTERN_URL=http://relay.example:8080 POSTERN_TOKEN=pst_... \
#   SVC_MAILER_PASSWORD='...' ./provision-seed.sh
#
# Optional: ANONYMOUS_BINDING (0.0.0.0:2526), ANONYMOUS_CLIENTS (192.168.1.13),
# AUTH_BINDING (0.0.0.0:587), AUTH_CLIENTS (192.168.1.0/24), SMART_HOST (empty = MX),
# SMART_HOST_TLS (opportunistic).
set -euo pipefail

: "${POSTERN_URL:?set POSTERN_URL, e.g. http://127.0.0.1:8080}"
: "${POSTERN_TOKEN:?set POSTERN_TOKEN to a write-scope API token (postern api-token new --scope write)}"
: "${SVC_MAILER_PASSWORD:?set SVC_MAILER_PASSWORD (at least 12 characters)}"
ANONYMOUS_BINDING=${ANONYMOUS_BINDING:-0.0.0.0:2526}
ANONYMOUS_CLIENTS=${ANONYMOUS_CLIENTS:-192.168.1.13}
AUTH_BINDING=${AUTH_BINDING:-0.0.0.0:587}
AUTH_CLIENTS=${AUTH_CLIENTS:-192.168.1.0/24}
SMART_HOST=${SMART_HOST:-}
SMART_HOST_TLS=${SMART_HOST_TLS:-opportunistic}

# PUT a JSON body to an API path; print "<status> <path>", fail on anything but 2xx.
put() {
    local path=$1 body=${2:-}
    local out status
    out=$(mktemp)
    local data=()
    [ -n "$body" ] && data=(-H 'Content-Type: application/json' --data "$body")
    status=$(curl -sS -o "$out" -w '%{http_code}' -X PUT \
        -H "Authorization: Bearer $POSTERN_TOKEN" "${data[@]}" "$POSTERN_URL$path")
    echo "$status $path"
    if [ "${status:0:1}" != 2 ]; then
        cat "$out" >&2
        echo >&2
        rm -f "$out"
        exit 1
    fi
    rm -f "$out"
}

# JSON string (the values here are plain: names, addresses, host:port).
q() { printf '"%s"' "$1"; }

put /api/v1/accepted-domains/cloudmonkeys.xyz '{"domain_type": "authoritative"}'

smart_hosts='[]'
[ -n "$SMART_HOST" ] && smart_hosts="[$(q "$SMART_HOST")]"
put "/api/v1/send-connectors/Outbound" \
    "{\"address_spaces\": [\"*\"], \"smart_hosts\": $smart_hosts, \"tls_policy\": $(q "$SMART_HOST_TLS")}"

# PART 1: anonymous relay, restricted to the clients' addresses.
put "/api/v1/receive-connectors/SMTP%20Relay%20Script" \
    "{\"bindings\": [$(q "$ANONYMOUS_BINDING")], \"remote_ip_ranges\": [$(q "$ANONYMOUS_CLIENTS")],
      \"permission_groups\": [\"anonymous\"]}"

# PART 2: authenticated relay: STARTTLS required, basic auth only after TLS.
put "/api/v1/receive-connectors/SMTP%20Auth%20Relay%20Script" \
    "{\"bindings\": [$(q "$AUTH_BINDING")], \"remote_ip_ranges\": [$(q "$AUTH_CLIENTS")],
      \"permission_groups\": [\"authenticated\"], \"require_tls\": true,
      \"auth_mechanisms\": [\"tls\", \"basic-auth\", \"basic-auth-require-tls\"]}"

password_json=$(printf '%s' "$SVC_MAILER_PASSWORD" | sed 's/\\/\\\\/g; s/"/\\"/g')
put /api/v1/service-accounts/svc-mailer \
    "{\"address\": \"svc-mailer@cloudmonkeys.xyz\", \"password\": \"$password_json\"}"
put /api/v1/service-accounts/svc-mailer/send-as/smb1@cloudmonkeys.xyz
