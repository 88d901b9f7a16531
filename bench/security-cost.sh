#!/usr/bin/env bash
# What TLS and authentication cost, on etcd 3.4 and on ballot, in the same run: 3 members on
# loopback (durability on, as in compare-etcd.sh), driven by the same client (`ballot bench`),
# in three settings:
#   plain  no TLS, no auth;
#   tls    mutual TLS on the client port (members require a client certificate);
#   auth   authentication on, the client logged in as a user whose role may read and write
#          bench/ (every request checks the token and the permission; not root, which skips
#          the permission check).
# Workloads: put with 64 clients and linearizable range with 64 clients, SECONDS each. Each
# round runs etcd then ballot in every setting; the table gives medians over ROUNDS, the cost of
# each setting against plain for each server, and ballot/etcd.
#
#   bench/security-cost.sh [ROUNDS] [SECONDS_PER_WORKLOAD]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}
source bench/lib.sh
install_missing etcd:etcd-server etcdctl:etcd-client openssl:openssl
cargo build --release --bin ballot -q
ballot=$PWD/target/release/ballot
work=$(mktemp -d /var/tmp/ballot-security.XXXXXX)
results="$work/results.jsonl"
pids=()
stop_cluster() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop_cluster; rm -rf "$work"' EXIT

# A CA, the members' certificate (IP 127.0.0.1) and the client's.
(
  cd "$work"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=bench CA" -keyout ca-key.pem -out ca.pem
  openssl req -newkey rsa:2048 -nodes -subj "/CN=member" -keyout member-key.pem -out member.csr \
    -addext "subjectAltName=IP:127.0.0.1"
  openssl x509 -req -in member.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 -copy_extensions copy -out member.pem
  # An extension makes it X.509 v3 (rustls, on either side, accepts no v1 certificate).
  openssl req -newkey rsa:2048 -nodes -subj "/CN=client" -keyout client-key.pem -out client.csr \
    -addext "extendedKeyUsage=clientAuth"
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 -copy_extensions copy -out client.pem
) > "$work/openssl.log" 2>&1

clients=(2379 22379 32379)
start_cluster() { # target setting data-dir
  local target=$1 setting=$2 dir=$3 scheme=http
  [ "$setting" = tls ] && scheme=https
  mkdir -p "$dir"
  local cluster="m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
  for i in 1 2 3; do
    local c=${clients[$((i - 1))]}
    local flags=(--name "m$i" --data-dir "$dir/m$i"
      --listen-client-urls "$scheme://127.0.0.1:$c" --advertise-client-urls "$scheme://127.0.0.1:$c"
      --listen-peer-urls "http://127.0.0.1:$((c + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((c + 1))"
      --initial-cluster "$cluster" --initial-cluster-token security-bench)
    if [ "$setting" = tls ]; then
      flags+=(--cert-file "$work/member.pem" --key-file "$work/member-key.pem" --trusted-ca-file "$work/ca.pem" --client-cert-auth)
    fi
    case $target in
      etcd) etcd "${flags[@]}" > "$dir/m$i.log" 2>&1 & ;;
      ballot) "$ballot" serve "${flags[@]}" > "$dir/m$i.log" 2>&1 & ;;
    esac
    pids+=("$!")
  done
  for _ in $(seq 100); do
    if e "$setting" endpoint health >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  e "$setting" put /ready 1 >/dev/null
  if [ "$setting" = auth ]; then
    e "$setting" user add root:rootpw >/dev/null
    e "$setting" role add root >/dev/null
    e "$setting" user grant-role root root >/dev/null
    e "$setting" user add bench:benchpw >/dev/null
    e "$setting" role add bench >/dev/null
    e "$setting" role grant-permission bench readwrite bench/ --prefix >/dev/null
    e "$setting" user grant-role bench bench >/dev/null
    e "$setting" auth enable >/dev/null
  fi
}
e() { # setting, etcdctl arguments
  local setting=$1
  shift
  if [ "$setting" = tls ]; then
    ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 --cacert "$work/ca.pem" --cert "$work/client.pem" \
      --key "$work/client-key.pem" --command-timeout 5s "$@"
  else
    ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:2379 --command-timeout 5s "$@"
  fi
}
run() { # target setting round name bench-arguments...
  local target=$1 setting=$2 round=$3 name=$4
  shift 4
  local access=(--endpoints 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379)
  case $setting in
    tls) access+=(--cacert "$work/ca.pem" --cert "$work/client.pem" --key "$work/client-key.pem") ;;
    auth) access+=(--user bench:benchpw) ;;
  esac
  local answer
  answer=$("$ballot" "${access[@]}" bench --json "$@" 2>"$work/bench.err") || { cat "$work/bench.err"; exit 1; }
  python3 -c 'import json, sys; r = json.loads(sys.argv[5]); r.update(target=sys.argv[1], setting=sys.argv[2], round=int(sys.argv[3]), name=sys.argv[4]); print(json.dumps(r))' \
    "$target" "$setting" "$round" "$name" "$answer" >> "$results"
}

started=$(date +%s)
for round in $(seq "$rounds"); do
  for target in etcd ballot; do
    for setting in plain tls auth; do
      echo "round $round: $target, $setting"
      start_cluster "$target" "$setting" "$work/$target-$setting-$round"
      run "$target" "$setting" "$round" put put --conns 8 --clients 64 --duration "$seconds" --key-space 100000
      run "$target" "$setting" "$round" range range --conns 8 --clients 64 --duration "$seconds" --key-space 1000
      stop_cluster
      rm -rf "$work/$target-$setting-$round"
    done
  done
done
echo "took $(( $(date +%s) - started )) s"
mkdir -p target && cp "$results" target/security-cost-results.jsonl

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def median(target, setting, name):
    values = [r["ops_per_sec"] for r in rows if (r["target"], r["setting"], r["name"]) == (target, setting, name)]
    errors = sum(sum(r["errors"].values()) for r in rows if (r["target"], r["setting"], r["name"]) == (target, setting, name))
    return (statistics.median(values) if values else float("nan")), errors
print(f"\n{'workload, setting':<24} {'etcd ops/s':>11} {'vs plain':>9} {'ballot ops/s':>13} {'vs plain':>9} {'ballot/etcd':>12}")
for name in ("put", "range"):
    (e0, _), (b0, _) = median("etcd", "plain", name), median("ballot", "plain", name)
    for setting in ("plain", "tls", "auth"):
        (e, ee), (b, be) = median("etcd", setting, name), median("ballot", setting, name)
        flag = f"  errors: etcd {ee}, ballot {be}" if ee or be else ""
        print(f"{name + ', ' + setting:<24} {e:>11.0f} {e / e0:>8.2f}× {b:>13.0f} {b / b0:>8.2f}× {b / e:>11.2f}×{flag}")
PY
