# Sourced by the project's scripts: the cache for build output and fixtures, outside the clone so
# repeat runs are incremental.
export TURBINE_CACHE="${TURBINE_CACHE:-$HOME/.cache/turbine}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TURBINE_CACHE/target}"
