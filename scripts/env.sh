# Sourced by the project's scripts: the cache for build output and fixtures, outside the clone so
# repeat runs are incremental.
export TURBINE_CACHE="${TURBINE_CACHE:-$HOME/.cache/turbine}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TURBINE_CACHE/target}"
# etcd and nats-server for distributed mode and its tests (scripts/infra.sh install puts them here).
export TURBINE_ETCD_BIN="${TURBINE_ETCD_BIN:-$TURBINE_CACHE/bin/etcd}"
export TURBINE_NATS_BIN="${TURBINE_NATS_BIN:-$TURBINE_CACHE/bin/nats-server}"
