#!/bin/bash
# Bulk load to separation statistics (bench/README.md, issue 15): a fresh
# hopfieldd (release build, an embedded RocksDB data directory in a scratch
# directory), one `hopfield store` of the Fashion-MNIST training images into
# a new bank, then `hopfield bank` every 0.25 s until every pattern has
# index-derived statistics (separation_estimated = separation_pending) and,
# unless QUICK=1, until they are exact (separation_pending = 0). Prints the
# seconds from the Store's return to each.
#
# Usage: bench/bulk_load.sh [RUNS] (default 1), from the repository root after
# `make build`. IMAGES (default Debian's dataset-fashion-mnist training
# images, .gz or plain IDX) and DIM (784) select the data; SERVER_TUNABLES
# replaces the server's GLIBC_TUNABLES (default glibc.malloc.hugetlb=1, as
# `make run`). The server is stopped by pid.
set -eu
runs=${1:-1}
root=$(pwd)
hopfieldd=$root/build/release/server/hopfieldd
hopfield=$root/build/release/client/hopfield
images=${IMAGES:-/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz}
dim=${DIM:-784}
quick=${QUICK:-0}
tunables=${SERVER_TUNABLES-glibc.malloc.hugetlb=1}

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
field() { grep -o "$1=[0-9]*" <<<"$2" | cut -d= -f2; }

for ((run = 1; run <= runs; run++)); do
  scratch=$(mktemp -d /tmp/hopfield_bulk.XXXXXX)
  GLIBC_TUNABLES=$tunables "$hopfieldd" --listen=127.0.0.1:0 \
    --metrics_listen=127.0.0.1:0 --port_file="$scratch/ports" \
    --data_dir="$scratch/data" >"$scratch/log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null; rm -rf "$scratch"' EXIT
  for _ in $(seq 100); do
    grep -q grpc_port "$scratch/ports" 2>/dev/null && break
    sleep 0.1
  done
  port=$(grep grpc_port "$scratch/ports" | cut -d= -f2)
  cli=("$hopfield" "--server=127.0.0.1:$port")
  "${cli[@]}" create-bank bulk --dim="$dim" >/dev/null
  start=$(now)
  "${cli[@]}" store bulk "$images" >/dev/null
  stored=$(now)
  estimated=""
  while true; do
    bank=$("${cli[@]}" bank bulk)
    pending=$(field separation_pending "$bank")
    if [[ -z $estimated && $pending == "$(field separation_estimated "$bank")" ]]; then
      estimated=$(since "$stored")
      [[ $quick == 1 ]] && break
    fi
    [[ $pending == 0 ]] && break
    sleep 0.25
  done
  exact=$([[ $quick == 1 ]] && echo "-" || since "$stored")
  echo "run $run: store $(echo "$stored - $start" | bc) s; estimates" \
    "$estimated s, exact $exact s after it returned ($(field patterns "$bank")" \
    "patterns)"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$scratch"
  trap - EXIT
done
