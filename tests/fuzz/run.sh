#!/usr/bin/env bash
# Runs every fuzz target (libFuzzer, through cargo-fuzz) for a bounded time, starting
# from and adding to the corpus kept in tests/fuzz/corpus. CI runs it briefly; run it
# longer by hand before a release:
#   tests/fuzz/run.sh            # 60 s per target
#   tests/fuzz/run.sh 1800       # half an hour per target
# A crash stops the run; libFuzzer prints the input and saves it under artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"

command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked
# libFuzzer's instrumentation needs unstable compiler flags: the nightly toolchain when
# the machine has one, otherwise the installed toolchain with its unstable features on.
if rustup toolchain list 2> /dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
# Release code with debug assertions: overflow checks and debug_assert! are on too.
"${fuzz[@]}" build --release --debug-assertions
for target in command data sasl address; do
    echo "== fuzz target $target for ${seconds}s"
    mkdir -p "corpus/$target"
    # -max_len: a session reads at most a command line or a chunk of data at a time;
    # -timeout: one input taking a second would be a quadratic path worth knowing.
    "${fuzz[@]}" run --release --debug-assertions "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=8192 -timeout=1 -print_final_stats=1
done
