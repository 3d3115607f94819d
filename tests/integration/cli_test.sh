#!/bin/bash
# The hopfield CLI against the real hopfieldd: every subcommand, its output
# and its exit status (the gRPC code). Usage: cli_test.sh HOPFIELDD HOPFIELD
set -u
hopfieldd="$1"
hopfield=$(realpath "$2")
work=$(mktemp -d)
"$hopfieldd" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 --port_file="$work/ports" --data_dir="$work/data" 2>"$work/server.log" &
pid=$!
trap 'kill -KILL $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 300); do [ -s "$work/ports" ] && break; sleep 0.02; done
port=$(sed -n 's/^grpc_port=//p' "$work/ports")
[ -n "$port" ] || { echo "hopfieldd did not start"; cat "$work/server.log"; exit 1; }
cli() { "$hopfield" --server="127.0.0.1:$port" "$@"; }
failures=0
expect() {  # expect DESCRIPTION WANT_EXIT GREP_PATTERN -- command...
  local what="$1" want="$2" pattern="$3"
  shift 4
  local out
  out=$("$@" 2>&1)
  local got=$?
  if [ "$got" != "$want" ] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL: $what: exit $got (want $want), output:"
    echo "$out"
    failures=$((failures + 1))
  else
    echo "ok: $what"
  fi
}

printf 'a,b,c\n1,0,0\n0,1,0\n0,0,1\n0.9,0.1,0\n' >"$work/p.csv"
expect "health" 0 '^SERVING$' -- cli health
expect "health of the service" 0 '^SERVING$' -- cli health hopfield.v1.MemoryService
expect "create-bank" 0 'name=toy dim=3 similarity=cosine' -- cli create-bank toy --dim=3
expect "create-bank duplicate" 6 'ALREADY_EXISTS' -- cli create-bank toy --dim=3
expect "create-bank bad name" 3 'INVALID_ARGUMENT' -- cli create-bank Toy --dim=3
expect "create-bank bad flag value" 64 'separation' -- cli create-bank x --dim=3 --separation=nope
expect "store csv" 0 'stored=4 first_id=1 last_id=4' -- cli store toy "$work/p.csv"
expect "store explicit ids" 0 'stored=1 first_id=100' -- cli store toy "$work/p.csv" --offset=3 --limit=1 --first_id=100
expect "store wrong dim" 3 'expected 3 values' -- cli store toy /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --limit=1
expect "banks" 0 $'^toy\t3\t5\t' -- cli banks
expect "bank" 0 'patterns=5' -- cli bank toy
expect "get" 0 '^2,0,1,0$' -- cli get toy 2
expect "get missing" 5 'NOT_FOUND.*77' -- cli get toy 77
expect "retrieve" 0 $'^0\t1\t' -- cli retrieve toy "$work/p.csv" --limit=3 --expect_first_id=1
expect "retrieve recall" 0 'recall=1 ' -- cli retrieve toy "$work/p.csv" --limit=3 --expect_first_id=1
expect "retrieve fixed points" 0 'nearest_id' -- cli retrieve toy "$work/p.csv" --output="$work/out.csv"
[ "$(wc -l <"$work/out.csv")" = 4 ] || { echo "FAIL: --output wrote $(wc -l <"$work/out.csv") lines"; failures=$((failures + 1)); }
expect "retrieve unknown bank" 5 'NOT_FOUND' -- cli retrieve nope "$work/p.csv"
expect "forget" 0 '^forgotten=1$' -- cli forget toy 100 555
expect "train bad mode" 64 'uhop_compat' -- cli train toy --mode=nope
expect "train bad option" 3 'TrainOptions.temperature' -- cli train toy --temperature=-1
expect "train unknown bank" 5 'NOT_FOUND' -- cli train nope
expect "train" 0 '^accepted=true feature_map_version=1 .*training_patterns=4 iterations=20 ' -- cli train toy --iterations=20 --skip_validation
expect "bank after train" 0 'feature_map_version=1 feature_dim=3 index_size=' -- cli bank toy
expect "retrieve through the map" 0 'recall=1 ' -- cli retrieve toy "$work/p.csv" --limit=3 --expect_first_id=1 --beta=100
expect "train uhop_compat" 0 '^accepted=true feature_map_version=2 .*training_patterns=4 ' -- cli train toy --mode=uhop_compat --iterations=10 --skip_validation
expect "backup" 0 "^backup=$work/backup banks=1 " -- cli backup "$work/backup"
[ -d "$work/backup" ] || { echo "FAIL: backup wrote no directory"; failures=$((failures + 1)); }
expect "backup into an existing directory" 6 'ALREADY_EXISTS' -- cli backup "$work/backup"
expect "backup, relative path" 0 "^backup=$work/relative-backup " -- bash -c "cd '$work' && '$hopfield' --server=127.0.0.1:$port backup relative-backup"
expect "unknown command" 64 'unknown command' -- cli frobnicate
expect "missing file" 5 'cannot open' -- cli store toy "$work/none.csv"
expect "delete-bank" 0 '^deleted=toy$' -- cli delete-bank toy
expect "deleted bank" 5 'NOT_FOUND' -- cli bank toy

kill -TERM $pid
wait $pid
code=$?
[ "$code" = 0 ] || { echo "FAIL: hopfieldd exited $code after SIGTERM"; failures=$((failures + 1)); }

# Flags from the environment (--tryfromenv): the listen address, the port file
# and the bank limit come only from FLAGS_* variables.
FLAGS_listen=127.0.0.1:0 FLAGS_port_file="$work/env-ports" FLAGS_max_banks=1 \
  FLAGS_data_dir="$work/env-data" FLAGS_metrics_listen=127.0.0.1:0 \
  "$hopfieldd" --tryfromenv=listen,port_file,max_banks,access_log,data_dir,metrics_listen 2>"$work/env-server.log" &
pid=$!
for _ in $(seq 300); do [ -s "$work/env-ports" ] && break; sleep 0.02; done
port=$(sed -n 's/^grpc_port=//p' "$work/env-ports")
if [ -z "$port" ]; then
  echo "FAIL: hopfieldd --tryfromenv did not write FLAGS_port_file"
  cat "$work/env-server.log"
  failures=$((failures + 1))
else
  expect "tryfromenv: serves on FLAGS_listen" 0 '^SERVING$' -- cli health
  expect "tryfromenv: first bank" 0 'name=one' -- cli create-bank one --dim=3
  expect "tryfromenv: FLAGS_max_banks=1" 8 'RESOURCE_EXHAUSTED' -- cli create-bank two --dim=3
  kill -TERM $pid
  wait $pid
  code=$?
  [ "$code" = 0 ] || { echo "FAIL: env-configured hopfieldd exited $code after SIGTERM"; failures=$((failures + 1)); }
fi
[ "$failures" = 0 ] && echo "cli ok" || echo "$failures failures"
exit "$failures"
