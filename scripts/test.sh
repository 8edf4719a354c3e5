#!/usr/bin/env bash
# Runs every test: fetches the fixtures (model, tokenizer configs) and installs etcd and nats-server
# into the cache once, then the workspace's unit and end-to-end tests, then the official `openai`
# Python SDK against the server.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/deps.sh test
scripts/fixtures.sh all
scripts/infra.sh install
# The numpy float64 reference that crates/engine/tests/cpu_reference.rs runs.
"$TURBINE_CACHE/venv/bin/python" -c 'import numpy' 2>/dev/null \
  || "$TURBINE_CACHE/venv/bin/python" -m pip install -q "numpy>=1.26,<3"
cargo test --workspace --all-targets "$@"
cargo build -p turbine
python3 scripts/checks/openai_sdk.py "$CARGO_TARGET_DIR/debug/turbine" --engine echo
python3 scripts/checks/openai_sdk.py "$CARGO_TARGET_DIR/debug/turbine" --engine cpu
