# Shared by the compat checks (sourced): `expect NAME EXPECTED ACTUAL` compares what a client
# printed with what etcd prints, counts the check, and stops at the first difference (calling
# the script's `on_failure`, if it defines one, to show more).
checks=0
expect() { # name, expected, actual
  if [ "$2" != "$3" ]; then
    printf 'FAIL %s\n--- expected\n%s\n--- got\n%s\n' "$1" "$2" "$3"
    if declare -F on_failure >/dev/null; then on_failure; fi
    exit 1
  fi
  checks=$((checks + 1))
  echo "ok   $1"
}

# A free loopback port, picked by the kernel.
port() { ports 1; }
# N distinct free loopback ports, one per line (all held open until each is picked, so no two
# are the same).
ports() {
  python3 -c 'import socket,sys; ss=[socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1",0))
print("\n".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# A scratch directory ($work) and the processes started for the script ($pids, which the script
# appends to): on exit, the processes are stopped and the directory removed.
scratch() {
  work=$(mktemp -d)
  pids=()
  trap remove_scratch EXIT
}
remove_scratch() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
