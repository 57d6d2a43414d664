# Sourced by the e2e server scripts: start_server ARGS... runs "$BIN serve ARGS --port 0" in the
# background with stdout/stderr in "$tmp/out" / "$tmp/err", waits until it listens, and sets
# $pid and $url. Needs $BIN and $tmp; waits up to $SERVER_WAIT_S seconds (default 60) for a
# large model to load. The benchmarks in bench/ source it too. A launcher array LAUNCH (e.g.
# mpirun -np 2) goes in front of the binary when set; $pid is then the launcher's.
start_server() {
  ${LAUNCH[@]+"${LAUNCH[@]}"} "$BIN" serve "$@" --port 0 >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  for _ in $(seq 1 $((${SERVER_WAIT_S:-60} * 10))); do
    grep -q "listening on" "$tmp/out" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || { cat "$tmp/err"; echo "server died"; exit 1; }
    sleep 0.1
  done
  url="$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$tmp/out" | head -1)"
  [ -n "$url" ] || { echo "no URL"; exit 1; }
}
