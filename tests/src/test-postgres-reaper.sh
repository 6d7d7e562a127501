#!/bin/sh
# Stops the tests' embedded PostgreSQL cluster once no test process has used it for
# IDLE seconds (tests/src/cluster.rs). Every test process holds a shared flock on
# users.lock for as long as it lives; the kernel drops it however the process ends
# (normal exit, panic, Ctrl-C, SIGKILL). Started with setsid, so Ctrl-C in the terminal
# does not reach it; run under `flock -n reaper.lock`, so there is one per cluster.
#
#   sh test-postgres-reaper.sh DIR [IDLE]
set -u
cd "$1" || exit 1
idle_limit=${2:-5}
idle=0
while :; do
    sleep 1
    if flock -n -x users.lock true; then idle=$((idle + 1)); else idle=0; fi
    [ "$idle" -ge "$idle_limit" ] || continue
    # start.lock: no test process is starting the cluster while it is stopped; checked
    # again under it, as one may have come since.
    if flock -x start.lock sh -c '
        flock -n -x users.lock true || exit 1
        [ -f postgres/postmaster.pid ] || exit 0
        pid=$(head -n 1 postgres/postmaster.pid)
        kill -INT "$pid" 2> /dev/null   # fast shutdown: sessions end, data is flushed
        while kill -0 "$pid" 2> /dev/null; do sleep 0.1; done'; then
        exit 0
    fi
    idle=0
done
