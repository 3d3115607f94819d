#!/bin/bash
# What TLS and API keys cost, and the long soak (bench/README.md, issue 18).
#
# Usage: bench/security_bench.sh [tls|soak|all] (default all), from the
# repository root after `make build` (the release preset).
#
#   tls:  three fresh hopfieldd (TLS; plaintext with keys; plaintext), each
#         holding the Fashion-MNIST training images (PATTERNS, default 60000);
#         load_generator --scenarios=tls pairs one client's Ping and
#         Retrieve between TLS and plaintext, then between keys and
#         plaintext, for SECONDS (default 60) each.
#   soak: one hopfieldd with TLS and keys on a data directory on disk, then
#         load_generator --scenarios=soak for SOAK_SECONDS (default 600) with
#         SOAK_WRITERS (8) writers of SOAK_WORKING_SET (5000) patterns of
#         SOAK_DIM (128), a read-only client and Train every
#         SOAK_TRAIN_SECONDS (30; 0: none); bounds
#         SOAK_P99_MS (250) and SOAK_RSS_GROWTH (0.10). SOAK_SERVER_FLAGS
#         (word-split) adds server flags for diagnostic runs, for example
#         SOAK_SERVER_FLAGS=--index_min_patterns=4294967295 (no index).
#
# SERVER_TUNABLES replaces the servers' GLIBC_TUNABLES (default
# glibc.malloc.hugetlb=1, as `make run`).
#
# Servers run with the malloc tunable of `make run` and are stopped by pid.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mode=${1:-all}
root=$(pwd)
hopfieldd=$root/build/release/server/hopfieldd
load_generator=$root/build/release/bench/load_generator
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
"$here/make_test_certs.sh" .
writer=$(openssl rand -hex 32)
reader=$(openssl rand -hex 32)
printf '%s read-write\n%s read-only\n' "$writer" "$reader" > keys
tls_flags=(--tls_cert_file=server.pem --tls_key_file=server.key)

# start NAME FLAGS...: a server on 127.0.0.1:0; sets $port and $pid.
start() {
  local name=$1
  shift
  GLIBC_TUNABLES=${SERVER_TUNABLES:-glibc.malloc.hugetlb=1} "$hopfieldd" --listen=127.0.0.1:0 \
    --metrics_listen= --port_file="$name.ports" "$@" 2>"$name.log" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1000); do [ -s "$name.ports" ] && break; sleep 0.02; done
  port=$(sed -n 's/^grpc_port=//p' "$name.ports")
}

if [ "$mode" = tls ] || [ "$mode" = all ]; then
  start tls --data_dir= "${tls_flags[@]}"
  tls_port=$port
  start keys --data_dir= --api_keys_file=keys
  keys_port=$port
  start plain --data_dir=
  plain_port=$port
  common=(--patterns="${PATTERNS:-60000}" --duration_seconds="${SECONDS_EACH:-60}"
    --bank=security-bench --compare_target="127.0.0.1:$plain_port")
  echo "== TLS against plaintext"
  "$load_generator" --target="127.0.0.1:$tls_port" --tls_ca_file=ca.pem \
    --scenarios=tls "${common[@]}"
  echo "== API keys (plaintext) against plaintext"
  "$load_generator" --target="127.0.0.1:$keys_port" --api_key="$writer" \
    --scenarios=tls "${common[@]}"
fi

if [ "$mode" = soak ] || [ "$mode" = all ]; then
  # shellcheck disable=SC2086 # word-split on purpose
  start soak --data_dir=soak-data "${tls_flags[@]}" --api_keys_file=keys \
    ${SOAK_SERVER_FLAGS:-}
  echo "== soak (TLS, keys, data on disk; server pid $pid)"
  HOPFIELD_API_KEY=$writer "$load_generator" --target="127.0.0.1:$port" \
    --tls_ca_file=ca.pem --read_only_api_key="$reader" --scenarios=soak \
    --patterns=100 --duration_seconds="${SOAK_SECONDS:-600}" \
    --soak_writers="${SOAK_WRITERS:-8}" \
    --soak_working_set="${SOAK_WORKING_SET:-5000}" \
    --soak_dim="${SOAK_DIM:-128}" \
    --soak_train_seconds="${SOAK_TRAIN_SECONDS:-30}" --server_pid="$pid" \
    --soak_p99_ms="${SOAK_P99_MS:-250}" \
    --soak_max_rss_growth="${SOAK_RSS_GROWTH:-0.10}"
  if grep -q -e "$writer" -e "$reader" soak.log; then
    echo "FAIL: a key appears in the server log"
    exit 1
  fi
fi
