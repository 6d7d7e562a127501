#!/usr/bin/env bash
# Memory benchmark: the release binary's resident memory (RSS, from /proc) when idle, and
# with 1,000 concurrent idle SMTP sessions (each greeted and past EHLO, then silent).
# Targets (issue 9): idle < 50 MiB, 1,000 idle sessions < 200 MiB.
#
#   tests/bench/memory-bench.sh              # 1000 sessions
#   SESSIONS=5000 tests/bench/memory-bench.sh
#
# Postgres: DATABASE_URL's server (default the local one on 127.0.0.1:5432); a fresh
# database is created and dropped. Postgres's own memory is not Postern's and is not counted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
sessions=${SESSIONS:-1000}
server=${PG_SERVER:-postgres://postgres@127.0.0.1:5432}
ulimit -n $((sessions * 2 + 1024))

(cd "$repo" && cargo build --release --quiet --bin postern)
bin=$repo/target/release/postern
db=postern_membench_$$
psql -q "$server/postgres" -c "create database $db"
work=$(mktemp -d)
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null || true
    psql -q "$server/postgres" -c "drop database if exists $db with (force)" || true
    rm -rf "$work"
}
trap cleanup EXIT
export DATABASE_URL=$server/$db POSTERN_DATA_DIR=$work POSTERN_HTTP_ADDR=127.0.0.1:18089 POSTERN_LOG_LEVEL=warn
port=12526
"$bin" receive-connector new --name bench --bindings 127.0.0.1:$port --remote-ip-ranges 127.0.0.0/8 \
    --permission-groups anonymous --max-connections-per-source $((sessions + 100)) > /dev/null
"$bin" serve 2> "$work/serve.log" &
pid=$!
for _ in $(seq 1 100); do "$bin" healthcheck > /dev/null 2>&1 && break; sleep 0.2; done

rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status"; }
hwm() { awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status"; }
sleep 5 # let start-up allocations settle
idle=$(rss)

# Open the sessions from Python's asyncio: connect, read the greeting, EHLO, stay.
python3 - "$port" "$sessions" "$work/ready" << 'PY' &
import asyncio, sys
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
async def session(i):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await reader.readline()).startswith(b"220"), "no greeting"
    writer.write(b"EHLO bench%d.test\r\n" % i)
    while True:
        line = await reader.readline()
        assert line.startswith(b"250"), line
        if line[3:4] == b" ":
            break
    return writer
async def main():
    writers = []
    for start in range(0, n, 100):  # in waves of 100, as a busy site's clients would
        writers += await asyncio.gather(*(session(i) for i in range(start, min(n, start + 100))))
    open(ready, "w").write(str(len(writers)))
    await asyncio.sleep(3600)
asyncio.run(main())
PY
client=$!
for _ in $(seq 1 600); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || { echo "the sessions did not all open"; cat "$work/serve.log"; exit 1; }
sleep 3
busy=$(rss)
open=$(ls "/proc/$pid/fd" | wc -l)
peak=$(hwm)
kill "$client" 2> /dev/null || true

echo "date=$(date -u +%FT%TZ) host_cores=$(nproc) binary=release"
printf 'idle_rss_mib\t%s\t(target < 50)\n' "$idle"
printf 'sessions\t%s\topen_fds=%s\n' "$(cat "$work/ready")" "$open"
printf 'rss_with_sessions_mib\t%s\t(target < 200)\n' "$busy"
printf 'peak_rss_mib\t%s\n' "$peak"
awk -v idle="$idle" -v busy="$busy" -v n="$(cat "$work/ready")" \
    'BEGIN { printf "per_session_kib\t%.1f\n", (busy - idle) * 1024 / n }'
