#!/usr/bin/env bash
# Sampling on the GPU against the exact filtered distribution (crates/engine/tests/cuda_sampling.rs)
# on a GPU machine with no Rust: pass the test binary built beforehand with
# `cargo test --release -p turbine-engine --test cuda_sampling --no-run` (its path is printed).
# Usage: scripts/gpu/sampling.sh path/to/cuda_sampling-binary
set -euo pipefail
test_bin="$(realpath "$1")"
here="$(dirname "$(realpath "$0")")"
source "$here/libs.sh"
"$test_bin" --ignored --nocapture
