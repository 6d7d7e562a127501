#!/usr/bin/env bash
# Authenticated-relay benchmark: sessions per second of
#   connect, EHLO, STARTTLS (TLS 1.3 handshake, certificate verified), EHLO, AUTH PLAIN,
#   one 10 KiB message, QUIT
# from SESSIONS concurrent clients (tests/src/bin/auth-bench.rs) into Postern, which
# commits each message to its embedded PostgreSQL (fsync on) before 250 and relays it to
# Postfix's smtp-sink. Run twice: with the verification cache (the default) and without
# it (POSTERN_AUTH_CACHE_SECS=0: a full argon2id verification per session).
#
#   tests/bench/auth-bench.sh                  # COUNT=5000 SESSIONS=50
#   COUNT=1000 SESSIONS=10 tests/bench/auth-bench.sh
# Needs: postfix (smtp-sink); run as root or as a user the embedded PostgreSQL accepts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
COUNT=${COUNT:-5000} SESSIONS=${SESSIONS:-50} SIZE=${SIZE:-10240} UNCACHED_COUNT=${UNCACHED_COUNT:-1000}
LISTEN=127.0.0.1:2587 SINK=127.0.0.1:2626 PASSWORD=bench-Passw0rd-for-auth

(cd "$repo" && cargo build --release --quiet --bin postern -p postern && cargo build --release --quiet --bin auth-bench -p postern-tests)
bin=$repo/target/release
work=$(mktemp -d /tmp/postern-auth-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    POSTERN_DATA_DIR=$work/data "$bin/postern" stop-database >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

sink_user=(); [ "$(id -u)" = 0 ] && sink_user=(-u nobody)
smtp-sink "${sink_user[@]}" -c "$SINK" 1000 > /dev/null & pids+=($!)

export POSTERN_DATA_DIR=$work/data POSTERN_HTTP_ADDR=127.0.0.1:0 POSTERN_LOG_LEVEL=warn POSTERN_HOSTNAME=relay.bench
"$bin/postern" receive-connector new --name "SMTP Auth Relay Script" --bindings "$LISTEN" \
    --remote-ip-ranges 127.0.0.0/8 --auth-mechanisms tls,basic-auth,basic-auth-require-tls \
    --permission-groups authenticated --require-tls true --max-connections-per-source 1000 > /dev/null
"$bin/postern" send-connector new --name sink --address-spaces "*" --smart-hosts "$SINK" --tls-policy none > /dev/null
echo "$PASSWORD" | "$bin/postern" service-account new --name svc-mailer --address svc-mailer@cloudmonkeys.xyz \
    --password-stdin > /dev/null
"$bin/postern" send-as add --account svc-mailer --sender smb1@cloudmonkeys.xyz > /dev/null
"$bin/postern" receive-connector certificate "SMTP Auth Relay Script" > "$work/ca.pem"

run() { # label, count, extra env
    local label=$1 count=$2; shift 2
    env "$@" "$bin/postern" serve & local server=$!
    pids+=("$server")
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/2587) 2>/dev/null && break; sleep 0.1; done
    local cpu0; cpu0=$(awk '{print $14+$15}' "/proc/$server/stat")
    local result
    result=$("$bin/auth-bench" --server "$LISTEN" --name relay.bench --ca "$work/ca.pem" --user svc-mailer \
        --password "$PASSWORD" --sessions "$SESSIONS" --count "$count" --size "$SIZE")
    local cpu1; cpu1=$(awk '{print $14+$15}' "/proc/$server/stat")
    local rss; rss=$(awk '/VmHWM/{print $2}' "/proc/$server/status")
    local ok; ok=$(echo "$result" | awk '{print $4}')
    local us=$(( (cpu1 - cpu0) * 10000 / (ok > 0 ? ok : 1) ))
    printf '%s\t%s\tpostern_cpu_us_per_session\t%s\tpeak_rss_mib\t%s\n' "$label" "$result" "$us" "$((rss / 1024))"
    kill "$server"; wait "$server" 2>/dev/null || true
}

printf '# %s  %s cores  size=%s\n' "$(date -u +%FT%TZ)" "$(nproc)" "$SIZE"
run cache "$COUNT"
run no-cache "$UNCACHED_COUNT" POSTERN_AUTH_CACHE_SECS=0
