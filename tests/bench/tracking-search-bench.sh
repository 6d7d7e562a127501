#!/usr/bin/env bash
# Message tracking search over a million events: fills a scratch database on the
# Postgres server at 127.0.0.1:5432 with 1,000,000 events spread over 30 days (appended
# in time order, as the engine writes them), then times `postern tracking-log` with each
# filter, end to end (process start, query, output), best of 3.
#
#   tests/bench/tracking-search-bench.sh         # EVENTS=1000000
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
EVENTS=${EVENTS:-1000000} PG=${PG:-postgres://postgres@127.0.0.1:5432}
db=postern_search_bench_$$
(cd "$repo" && cargo build --release --quiet --bin postern -p postern)
postern=$repo/target/release/postern
psql -q "$PG/postgres" -c "create database $db"
trap 'psql -q "$PG/postgres" -c "drop database if exists $db with (force)"' EXIT
# Loopback: no TLS to Postgres, so the figures are the search, not three handshakes.
export DATABASE_URL="$PG/$db?sslmode=disable" POSTERN_LOG_LEVEL=warn
"$postern" migrate > /dev/null
psql -q "$PG/$db" <<SQL
insert into tracking_events (at, event_id, source, connector, client_ip, sender, recipients, recipient_status,
    message_id, queue_id, subject, size, recipient_count, auth_as, account, session_id)
select now() - interval '30 days' + i * (interval '30 days' / $EVENTS),
       (array['RECEIVE','SEND','DEFER','REJECT'])[1 + i % 4], 'SMTP', 'SMTP Relay Script',
       ('10.0.' || (i / 250 % 256) || '.' || (i % 250))::inet,
       'app' || (i % 5000) || '@cloudmonkeys.xyz', array['user' || (i % 20000) || '@example.com'],
       array['250 2.0.0 OK'], '<' || i || '@app>', md5(i::text)::uuid, 'Report ' || i, 10240, 1,
       'anonymous', case when i % 10 = 0 then 'svc' || (i % 50) end, md5((i / 7)::text)::uuid
from generate_series(1, $EVENTS) i;
vacuum analyze tracking_events;
SQL
printf '# %s  %s cores  %s events\n' "$(date -u +%FT%TZ)" "$(nproc)" "$EVENTS"
search() { # label, args...
    local label=$1; shift
    local best=999999 rows=0
    for _ in 1 2 3; do
        local t0; t0=$(date +%s%N)
        rows=$("$postern" tracking-log --json "$@" | grep -c '"event_id"' || true)
        local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
        [ "$ms" -lt "$best" ] && best=$ms
    done
    printf '%s\t%s ms\t%s rows\n' "$label" "$best" "$rows"
}
search "sender (all 30 days)" --sender app4242@cloudmonkeys.xyz
search "recipient (all 30 days)" --recipient user12345@example.com
search "message-id" --message-id '<500000@app>'
search "client IP + its messages' later events" --client-ip 10.0.3.7
search "account" --account svc10 --limit 100
search "last 10 minutes" --start -10m
search "REJECT in the last hour" --event-id REJECT --start -1h
search "subject text in the last day" --subject 'report 99999' --start -1d
search "connector, last 2 hours" --connector 'SMTP Relay Script' --start -2h
