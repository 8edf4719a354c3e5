#!/usr/bin/env bash
# Decode through CUDA graphs against decode without them (crates/engine/tests/cuda_graphs.rs) on
# a GPU machine with no Rust: pass the test binary built beforehand with
# `cargo test --release -p turbine-engine --test cuda_graphs --no-run` (its path is printed).
# Usage: scripts/gpu/graphs.sh path/to/cuda_graphs-binary
set -euo pipefail
test_bin="$(realpath "$1")"
here="$(dirname "$(realpath "$0")")"
source "$here/libs.sh"
"$test_bin" --ignored --nocapture
