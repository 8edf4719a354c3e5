#!/usr/bin/env bash
# Serves the default model (SmolLM2-135M-Instruct, fetched once into the cache) on
# http://127.0.0.1:8000/v1. Extra arguments go to `turbine serve` (see `turbine serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/deps.sh serve
scripts/fixtures.sh model
exec cargo run --release -p turbine -- serve "$@"
