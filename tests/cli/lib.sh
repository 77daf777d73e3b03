# Shared by the shell tests of tests/cli: source it after setting nothing.
# Gives $tmp (removed at exit), pids (killed at exit), check NAME CMD...
# (counts pass/fail) and start NAME PROGRAM ARGS... (runs a server, waits
# <= 30 s for its "listening on 127.0.0.1:PORT" line, sets $port).
tmp=$(mktemp -d /tmp/hinge-cli-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
pass=0 fail=0
check() {
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok - $name"; else fail=$((fail + 1)); echo "not ok - $name"; fi
}
start() {
  local name=$1; shift
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  disown $!
  port=""
  for _ in $(seq 300); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/$name.out")
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  cat "$tmp/$name.err"
  return 1
}
