#!/usr/bin/env bash
# Console sign-in under a flood (issue 16): 200 concurrent sign-ins with wrong passwords,
# each from its own loopback address and with its own name (so neither the per-source
# nor the per-name throttle stops them: the worst case for memory, every one of them
# reaches a password check), then the administrator signs in from her usual address.
# Reports the release binary's peak resident memory during the flood (VmHWM, reset
# after start-up through /proc/PID/clear_refs).
# Target: peak RSS under 150 MiB, and the good sign-in succeeds.
#
#   tests/bench/sign-in-bench.sh            # 200 sign-ins
#   ATTEMPTS=1000 tests/bench/sign-in-bench.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
attempts=${ATTEMPTS:-200}
server=${PG_SERVER:-postgres://postgres@127.0.0.1:5432}

(cd "$repo" && cargo build --release --quiet --bin postern)
bin=$repo/target/release/postern
db=postern_signinbench_$$
psql -q "$server/postgres" -c "create database $db"
work=$(mktemp -d)
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null || true
    psql -q "$server/postgres" -c "drop database if exists $db with (force)" || true
    rm -rf "$work"
}
trap cleanup EXIT
export DATABASE_URL=$server/$db POSTERN_DATA_DIR=$work POSTERN_HTTP_ADDR=127.0.0.1:18090 POSTERN_LOG_LEVEL=warn
echo "correct-horse-battery" | "$bin" admin new --name alice --role admin --password-stdin > /dev/null
"$bin" serve 2> "$work/serve.log" &
pid=$!
for _ in $(seq 1 100); do "$bin" healthcheck > /dev/null 2>&1 && break; sleep 0.2; done
sleep 3
startup_peak=$(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
idle=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
echo 5 > "/proc/$pid/clear_refs" # the peak from here on

python3 - "$attempts" << 'PY' > "$work/result"
import asyncio, sys, time
n = int(sys.argv[1])
async def sign_in(source, password, name="alice"):
    reader, writer = await asyncio.open_connection("127.0.0.1", 18090, local_addr=(source, 0))
    body = f"name={name}&password={password}".encode()
    writer.write(b"POST /sign-in HTTP/1.1\r\nHost: 127.0.0.1:18090\r\nConnection: close\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    status = int((await reader.readline()).split()[1])
    await reader.read()
    writer.close()
    return status
async def main():
    # Alice signed in from her usual address before the flood.
    assert await sign_in("127.0.9.1", "correct-horse-battery") == 303
    start = time.monotonic()
    sources = [f"127.0.{10 + i // 250}.{1 + i % 250}" for i in range(n)]
    names = ["alice" if i % 2 else f"guess{i}" for i in range(n)]
    statuses = await asyncio.gather(*(sign_in(s, "wrong-password-here", m) for s, m in zip(sources, names)))
    flood = time.monotonic() - start
    good = await sign_in("127.0.9.1", "correct-horse-battery")
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    print(f"bad_sign_ins\t{n}\t{counts}\tseconds\t{flood:.1f}")
    print(f"good_sign_in_status\t{good}\t(303 expected)")
asyncio.run(main())
PY
peak=$(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
echo "date=$(date -u +%FT%TZ) host_cores=$(nproc) binary=release"
cat "$work/result"
printf 'startup_peak_rss_mib\t%s\n' "$startup_peak"
printf 'idle_rss_mib\t%s\n' "$idle"
printf 'peak_rss_mib_during_flood\t%s\t(target < 150)\n' "$peak"
