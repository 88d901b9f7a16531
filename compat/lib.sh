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
