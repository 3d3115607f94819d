#!/bin/bash
# A short soak (bench/soak.h) of a fresh hopfieldd on 127.0.0.1:0 with TLS
# and API keys on: mixed Store / Forget / Retrieve / GetPatterns / Train from
# several clients and a read-only one, then every acknowledged pattern
# checked. Certificates and keys are made here with the openssl CLI. Memory
# is reported, not bounded: 15 s is all warm-up (the long soak in
# bench/security_bench.sh measures it).
# Usage: soak_smoke.sh HOPFIELDD LOAD_GENERATOR [SECONDS]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
hopfieldd=$(realpath "$1")
load_generator=$(realpath "$2")
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -KILL $pid 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
"$here/make_test_certs.sh" .
writer=$(openssl rand -hex 24)
reader=$(openssl rand -hex 24)
printf '%s read-write\n%s read-only\n' "$writer" "$reader" > keys
"$hopfieldd" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 --port_file=ports \
  --data_dir=data --tls_cert_file=server.pem --tls_key_file=server.key \
  --api_keys_file=keys 2>server.log &
pid=$!
for _ in $(seq 500); do [ -s ports ] && break; sleep 0.02; done
port=$(sed -n 's/^grpc_port=//p' ports)
HOPFIELD_API_KEY=$writer "$load_generator" --target="127.0.0.1:$port" --tls_ca_file=ca.pem \
  --read_only_api_key="$reader" --scenarios=soak --patterns=100 \
  --duration_seconds="${3:-15}" --soak_writers=4 --soak_working_set=500 \
  --soak_train_seconds=5 --server_pid=$pid |
  tee out
grep -q '^soak result: PASS$' out
! grep -q -e "$writer" -e "$reader" server.log  # keys never logged
kill -TERM $pid
wait $pid
pid=
