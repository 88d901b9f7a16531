# Shared by the comparison scripts: start and stop a 3-member cluster of either system on
# ballot dev's ports, and record `ballot bench` results as JSON lines.
# The caller sets: ballot (the binary), endpoints, results (a JSON-lines file); optionally client
# (the binary whose `ballot bench` drives the load, if not $ballot).
server=""

install_missing() { # command:debian-package ...: installs the packages whose command is missing
  local missing="" pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
  done
  if [ -n "$missing" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
}

stop_server() {
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
  pkill -f "etcd --name e[1-9]" 2>/dev/null || true
  # Write back what the stopped system left dirty in the page cache now: otherwise the kernel
  # does it during the next system's run, and its fsyncs pay for it.
  sync
  sleep 1
}

start() { # target data-dir: starts the cluster ($members members, 3 unless set) and waits until it takes a write
  case $1 in
    etcd) bench/etcd-cluster.sh "$2" "${members:-3}" >/dev/null 2>&1 & ;;
    ballot) "$ballot" dev --nodes "${members:-3}" --data-dir "$2" >/dev/null 2>&1 & ;;
  esac
  server=$!
  local endpoint every
  for _ in $(seq 100); do
    if ETCDCTL_API=3 etcdctl --endpoints=$endpoints --command-timeout=1s put /compare/ready 1 >/dev/null 2>&1; then
      # Every member answers too (a load spread over them connects to each).
      every=1
      for endpoint in ${endpoints//,/ }; do
        ETCDCTL_API=3 etcdctl --endpoints="$endpoint" --command-timeout=1s get /compare/ready >/dev/null 2>&1 || every=0
      done
      [ "$every" = 1 ] && return
    fi
    sleep 0.2
  done
  echo "$1 did not start"; exit 1
}

record() { # target round name json
  python3 -c 'import json,sys; r=json.loads(sys.argv[4]); r.update(target=sys.argv[1], round=int(sys.argv[2]), name=sys.argv[3]); print(json.dumps(r))' "$@" >> "$results"
}

run() { # target round name args...: one `ballot bench` run, recorded
  local target=$1 round=$2 name=$3
  shift 3
  record "$target" "$round" "$name" "$("${client:-$ballot}" bench --endpoints $endpoints --json "$@" 2>/dev/null)"
}

rss_kib() { # target: the resident memory of its three members, KiB
  local pattern rss=0
  case $1 in etcd) pattern="etcd --name e[123]" ;; ballot) pattern=" serve --name n[123]" ;; esac
  for pid in $(pgrep -f "$pattern"); do rss=$((rss + $(ps -o rss= -p "$pid"))); done
  echo "$rss"
}

save_results() { # name: keeps the run's raw results (the work dir is removed on exit)
  mkdir -p target/bench-results
  local kept="target/bench-results/$1-$(date +%Y%m%d-%H%M%S).jsonl"
  cp "$results" "$kept"
  echo "raw results in $kept"
}
