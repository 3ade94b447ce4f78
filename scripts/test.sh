#!/usr/bin/env bash
# test.sh -- build and run every test of the workspace (unit tests + namespace interop tests).
# Run as root on a fresh Debian/Ubuntu machine: sudo scripts/test.sh
# Env: TEST_THREADS (default 3: interop tests run in parallel, each in its own namespaces),
#      extra arguments are passed to the test binaries (e.g. scripts/test.sh ss_to_ss).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" -eq 0 ]; then
  scripts/install-deps.sh
else
  echo "test.sh: not root: not installing packages; the interop tests will SKIP (or FAIL under CI)" >&2
fi

echo "== cargo build --workspace"
cargo build --workspace

echo "== cargo test --workspace"
# Hard ceiling well below CI's 90 minutes; every harness wait has its own deadline anyway.
timeout -k 30 75m cargo test --workspace -- --test-threads="${TEST_THREADS:-3}" "$@"
