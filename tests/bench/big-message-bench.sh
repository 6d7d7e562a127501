#!/usr/bin/env bash
# Big messages (issue 17): CLIENTS clients each send one SIZE_MIB message at the same
# time (default 20 × 30 MiB, a few scanners sending PDFs) through Postern to a smart
# host; reports Postern's peak resident memory while they are taken in and delivered,
# and checks that every body arrives byte-identical (the sink hashes what follows the
# header section and compares with the digest the client put in a header).
# Target: peak RSS under 200 MiB.
#
#   tests/bench/big-message-bench.sh
#   CLIENTS=10 SIZE_MIB=10 tests/bench/big-message-bench.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
clients=${CLIENTS:-20}
# DELIVER=0: the smart host is down, so only taking the messages in is measured.
deliver=${DELIVER:-1}
size_mib=${SIZE_MIB:-30}
server=${PG_SERVER:-postgres://postgres@127.0.0.1:5432}

(cd "$repo" && cargo build --release --quiet --bin postern)
bin=$repo/target/release/postern
db=postern_bigbench_$$
psql -q "$server/postgres" -c "create database $db"
work=$(mktemp -d)
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null || true
    [ -n "${sink:-}" ] && kill "$sink" 2> /dev/null || true
    psql -q "$server/postgres" -c "drop database if exists $db with (force)" || true
    rm -rf "$work"
}
trap cleanup EXIT
# As the Docker image sets it (docker/Dockerfile): 1 MiB and larger allocations come
# from mmap and go back to the kernel when freed. MALLOC_MMAP_THRESHOLD_=adaptive
# measures glibc's own default instead.
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-1048576}
[ "$MALLOC_MMAP_THRESHOLD_" = adaptive ] && unset MALLOC_MMAP_THRESHOLD_
export DATABASE_URL=$server/$db POSTERN_DATA_DIR=$work POSTERN_HTTP_ADDR=127.0.0.1:18092 POSTERN_LOG_LEVEL=warn
smtp_port=12530 sink_port=12531

# The smart host: reads each message, checks its body against the client's digest.
python3 - "$sink_port" "$work/sink.log" << 'PY' &
import asyncio, hashlib, sys
port, log = int(sys.argv[1]), sys.argv[2]
async def session(reader, writer):
    writer.write(b"220 sink\r\n")
    data = None
    while True:
        line = await reader.readline()
        if not line:
            break
        if data is not None:
            if line == b".\r\n":
                message = b"".join(data)
                head, _, body = message.partition(b"\r\n\r\n")
                digest = [l.split(b": ")[1] for l in head.split(b"\r\n") if l.startswith(b"X-Bench-Digest: ")]
                ok = bool(digest) and hashlib.sha256(body).hexdigest().encode() == digest[0]
                with open(log, "a") as f:
                    f.write(f"{'identical' if ok else 'DIFFERENT'} {len(message)}\n")
                writer.write(b"250 ok\r\n")
                data = None
            else:
                data.append(line[1:] if line.startswith(b"..") else line)
            continue
        verb = line[:4].upper()
        if verb == b"DATA":
            data = []
            writer.write(b"354 go\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            break
        elif verb == b"EHLO":
            writer.write(b"250-sink\r\n250 SIZE 100000000\r\n")
        else:
            writer.write(b"250 ok\r\n")
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(session, "127.0.0.1", port, limit=1 << 20)
    await server.serve_forever()
asyncio.run(main())
PY
sink=$!

"$bin" accepted-domain new cloudmonkeys.xyz > /dev/null
target_port=$sink_port
[ "$deliver" = 1 ] || target_port=1
"$bin" send-connector new --name Sink --address-spaces '*' --smart-hosts 127.0.0.1:$target_port --tls-policy none > /dev/null
"$bin" receive-connector new --name Scanners --bindings 127.0.0.1:$smtp_port --remote-ip-ranges 127.0.0.1 \
    --permission-groups anonymous --max-message-size $(( (size_mib + 5) * 1048576 )) \
    --max-connections-per-source $((clients + 10)) > /dev/null
"$bin" serve 2> "$work/serve.log" &
pid=$!
for _ in $(seq 1 100); do "$bin" healthcheck > /dev/null 2>&1 && break; sleep 0.2; done
sleep 2
idle=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
echo 5 > "/proc/$pid/clear_refs"

start=$(date +%s.%N)
python3 - "$smtp_port" "$clients" "$size_mib" << 'PY'
import hashlib, smtplib, sys
from concurrent.futures import ThreadPoolExecutor
port, clients, size_mib = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
line = (b"JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29kZT4+CnN0cmVhbQp4nCu" + b"\r\n")
def send(n):
    body = line * (size_mib * 1048576 // len(line))
    digest = hashlib.sha256(body).hexdigest()
    message = (f"From: scanner{n}@cloudmonkeys.xyz\r\nTo: archive@cloudmonkeys.xyz\r\nSubject: scan {n}\r\n"
               f"X-Bench-Digest: {digest}\r\n\r\n").encode() + body
    with smtplib.SMTP("127.0.0.1", port, timeout=600) as s:
        s.sendmail(f"scanner{n}@cloudmonkeys.xyz", ["archive@cloudmonkeys.xyz"], message)
with ThreadPoolExecutor(clients) as pool:
    list(pool.map(send, range(clients)))
PY
accepted=$(date +%s.%N)
for _ in $(seq 1 600); do
    [ "$deliver" = 1 ] || break
    [ "$(wc -l < "$work/sink.log" 2> /dev/null || echo 0)" -ge "$clients" ] && break
    sleep 0.5
done
done_at=$(date +%s.%N)
peak=$(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
echo "date=$(date -u +%FT%TZ) host_cores=$(nproc) binary=release clients=$clients size_mib=$size_mib"
printf 'idle_rss_mib\t%s\n' "$idle"
printf 'accepted_in_s\t%.1f\n' "$(echo "$accepted - $start" | bc)"
printf 'delivered_in_s\t%.1f\n' "$(echo "$done_at - $start" | bc)"
touch "$work/sink.log"
printf 'delivered\t%s\tidentical\t%s\n' "$(wc -l < "$work/sink.log")" "$(grep -c '^identical' "$work/sink.log" || true)"
printf 'peak_rss_mib\t%s\t(target < 200)\n' "$peak"
