#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is needed, builds the C guests,
# checks formatting and lints, then runs every unit and end-to-end test. CI runs exactly this.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build-guests.sh
# Benchmarks and production leave this unset; a backtrace per error only slows tests down.
unset RUST_BACKTRACE
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
