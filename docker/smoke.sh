#!/usr/bin/env bash
# Smoke test of the container image: builds docker/Dockerfile with podman, runs it the
# way docker/compose.yaml does (read-only root, /tmp on tmpfs, a volume for the data
# directory, no capabilities, no-new-privileges, console over HTTPS on every interface),
# against a PostgreSQL database, and checks what a deployment relies on:
#   - the image's HEALTHCHECK passes once the node is ready;
#   - the process runs as user 10025 and cannot write to the root file system;
#   - a message sent to the anonymous relay connector reaches a smart host (smtp-sink);
#   - SIGTERM (podman stop) ends it gracefully, with exit status 0, well within the grace period.
# Prints the image size and the times. Not part of .ci/run: a cold image build compiles
# the whole project in release mode (15-30 minutes on 2 cores).
#
#   docker/smoke.sh            # build (cached layers are reused) and test
#   POSTERN_SMOKE_NO_BUILD=1 docker/smoke.sh   # test the image already built
#
# Needs podman (with runc), debootstrap, swaks, postfix's smtp-sink, and Postgres on
# $PGHOST:$PGPORT (127.0.0.1:5432, trust auth). No registry is reachable on the build
# machines, so the base images are made locally from Debian's packages and this
# machine's Rust toolchain (../shared/CONTAINERS.md); where a registry is reachable, the
# real images are used as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

podman=(podman --storage-driver vfs)
image=localhost/postern:smoke
name=postern-smoke-$$
rust_version=$(sed -n 's/^ARG RUST_VERSION=//p' docker/Dockerfile)
work=$(mktemp -d /var/tmp/postern-smoke.XXXXXX)
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
database=postern_smoke_$$

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
say() { printf '== %s\n' "$*"; }
fail() { printf 'smoke: FAILED: %s\n' "$*" >&2; exit 1; }
seconds_since() { echo $(( $(date +%s) - $1 )); }

cleanup() {
    "${podman[@]}" rm -f "$name" > /dev/null 2>&1 || true
    "${podman[@]}" volume rm -f "$name-data" > /dev/null 2>&1 || true
    [ -n "${sink_pid:-}" ] && kill "$sink_pid" 2> /dev/null
    psql -qAt -d postgres -c "drop database if exists $database with (force)" > /dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

have_image() { "${podman[@]}" image exists "$1"; }

# Base images the Dockerfile names, made locally when they are not there.
if ! have_image docker.io/library/debian:bookworm-slim; then
    say "base image debian:bookworm-slim from Debian's packages (debootstrap)"
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2> /dev/null || echo http://deb.debian.org/debian)
    debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log"
    tar -C "$work/rootfs" -c . | "${podman[@]}" import - docker.io/library/debian:bookworm-slim > /dev/null
fi
if ! have_image "docker.io/library/rust:$rust_version-slim-bookworm"; then
    say "base image rust:$rust_version-slim-bookworm from this machine's toolchain"
    toolchain=$(rustc --print sysroot)
    mkdir -p "$work/rust/extra-ca"
    cp -a "$toolchain" "$work/rust/toolchain"
    # The certificate authorities this machine adds to Debian's (a TLS-inspecting proxy
    # in front of crates.io, for one): cargo inside the build must trust them too.
    cp /usr/local/share/ca-certificates/*.crt "$work/rust/extra-ca/" 2> /dev/null || true
    cat > "$work/rust/Containerfile" << 'EOF'
FROM docker.io/library/debian:bookworm-slim
COPY toolchain /usr/local/rust
COPY extra-ca/ /usr/local/share/ca-certificates/
ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:$PATH CARGO_HOME=/usr/local/cargo
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \
    && update-ca-certificates && rm -rf /var/lib/apt/lists/*
EOF
    "${podman[@]}" build --network=host -q -t "docker.io/library/rust:$rust_version-slim-bookworm" "$work/rust" > /dev/null
fi

if [ -z "${POSTERN_SMOKE_NO_BUILD:-}" ]; then
    say "building the image (podman build -f docker/Dockerfile)"
    started=$(date +%s)
    # Docker's image format: OCI images drop HEALTHCHECK, which this test checks. No
    # cached layer per instruction: vfs stores each as a full copy of the file system,
    # tens of gigabytes for this Dockerfile.
    "${podman[@]}" build --network=host --layers=false --format docker -f docker/Dockerfile -t "$image" . \
        > "$work/build.log" 2>&1 \
        || { tail -40 "$work/build.log"; fail "the image did not build"; }
    build_seconds=$(seconds_since "$started")
fi
size=$("${podman[@]}" image inspect --format '{{.Size}}' "$image")
healthcheck=$("${podman[@]}" image inspect --format '{{json .Config.Healthcheck}}' "$image")
[[ "$healthcheck" == *healthcheck* ]] || fail "the image has no HEALTHCHECK: $healthcheck"

say "database $database, smart host (smtp-sink) and ports"
psql -qAt -d postgres -c "create database $database"
smtp_port=$(free_port) http_port=$(free_port) sink_port=$(free_port)
mkdir -p "$work/sink"
# smtp-sink drops root for -u's user, who must be able to write the dumps.
sink_user=$(id -un)
if [ "$(id -u)" = 0 ]; then sink_user=nobody; chmod 755 "$work"; chmod 1777 "$work/sink"; fi
smtp-sink -d "$work/sink/message-%H%M%S." -u "$sink_user" "127.0.0.1:$sink_port" 10 &
sink_pid=$!
"${podman[@]}" volume create "$name-data" > /dev/null
# As compose.yaml runs it (the memory limit aside: cgroup controllers are not available
# in this sandbox). Host networking: no network namespace can be made here.
run=("${podman[@]}" run --network=host --read-only --tmpfs /tmp --volume "$name-data:/var/lib/postern"
    --cap-drop ALL --security-opt no-new-privileges
    -e "DATABASE_URL=postgres://$PGUSER@$PGHOST:$PGPORT/$database?sslmode=disable"
    -e POSTERN_HOSTNAME=relay.test -e "POSTERN_HTTP_ADDR=0.0.0.0:$http_port")
cli() { "${run[@]}" --rm "$image" "$@" > /dev/null; }

# The seed's anonymous relay: 127.0.0.1 may send, anonymously, to any domain (its relay
# right, Exchange's Ms-Exch-SMTP-Accept-Any-Recipient).
say "configuration through the image's CLI (the seed's anonymous relay)"
cli migrate
cli accepted-domain new cloudmonkeys.xyz
cli send-connector new --name "Smart host" --address-spaces '*' --smart-hosts "127.0.0.1:$sink_port" --tls-policy none
cli receive-connector new --name "SMTP Relay Script" --bindings "127.0.0.1:$smtp_port" \
    --remote-ip-ranges 127.0.0.1 --permission-groups anonymous --accept-any-recipient true

say "starting the node"
started=$(date +%s)
"${run[@]}" -d --name "$name" "$image" > /dev/null
# podman runs HEALTHCHECK from a systemd timer, which this machine lacks; run it on
# demand as the timer would, until it passes or the start period (30 s) is over.
healthy=
for _ in $(seq 1 60); do
    if "${podman[@]}" healthcheck run "$name" > /dev/null 2>&1; then healthy=yes; break; fi
    sleep 0.5
done
[ -n "$healthy" ] || { "${podman[@]}" logs "$name" | tail -20; fail "the health check never passed"; }
healthy_seconds=$(seconds_since "$started")
echo "healthy after ${healthy_seconds} s"

say "non-root and read-only"
uid=$("${podman[@]}" exec "$name" id -u)
[ "$uid" = 10025 ] || fail "runs as uid $uid, not 10025"
if "${podman[@]}" exec "$name" sh -c 'echo x > /usr/local/bin/written' 2> /dev/null; then
    fail "the root file system is writable"
fi
"${podman[@]}" exec "$name" sh -c 'echo x > /var/lib/postern/written && rm /var/lib/postern/written' \
    || fail "the data volume is not writable"
echo "uid $uid; / read-only; /var/lib/postern writable"

say "relaying one message"
for _ in $(seq 1 40); do
    (echo > "/dev/tcp/127.0.0.1/$smtp_port") 2> /dev/null && break
    sleep 0.25
done
swaks --server "127.0.0.1:$smtp_port" --from app@cloudmonkeys.xyz --to someone@example.org \
    --header "Subject: postern smoke $$" --body "through the container" > "$work/swaks.log" \
    || { cat "$work/swaks.log"; fail "the relay refused the message"; }
grep -q '^<- *250 ' "$work/swaks.log" || fail "no 250 for the message"
delivered=
for _ in $(seq 1 60); do
    if grep -lq "postern smoke $$" "$work"/sink/* 2> /dev/null; then delivered=yes; break; fi
    sleep 0.5
done
[ -n "$delivered" ] || { "${podman[@]}" logs "$name" | tail -20; fail "the message never reached the smart host"; }
echo "delivered to the smart host"

say "graceful stop"
started=$(date +%s)
"${podman[@]}" stop -t 40 "$name" > /dev/null
stop_seconds=$(seconds_since "$started")
status=$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "$name")
[ "$status" = 0 ] || { "${podman[@]}" logs "$name" | tail -20; fail "exit status $status after SIGTERM"; }
echo "stopped in ${stop_seconds} s with status 0"

printf 'smoke: passed. image %s: %s MB; build %s; healthy after %s s; stop %s s\n' \
    "$image" "$((size / 1000000))" "${build_seconds:+${build_seconds} s}" "$healthy_seconds" "$stop_seconds"
