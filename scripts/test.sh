#!/usr/bin/env bash
# Runs porthole's whole test suite: formatting, lints, and every test of every crate
# (unit tests, the agent's integration tests, the differential suite against Debian's qemu-ga,
# and the storage tests that build real disk images).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo test"
cargo test --workspace --locked --no-fail-fast
