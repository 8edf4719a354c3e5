# Sourced by the benchmark scripts. `start SERVE_FLAGS...` runs `$bin serve --port 0 SERVE_FLAGS...`
# in the background and waits until it serves; sets $pid and $url.
start() {
  local out; out="$(mktemp)"
  "$bin" serve --port 0 "$@" >"$out" 2>/dev/null &
  pid=$!
  for _ in $(seq 600); do grep -q "serving" "$out" && break; sleep 0.1; done
  url="$(sed -n 's/.* at \(http:[^ ]*\)\/v1$/\1/p' "$out")"
  rm -f "$out"
}
