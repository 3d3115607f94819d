#!/bin/bash
# Runs load_generator briefly against a fresh hopfieldd on 127.0.0.1:0.
# Usage: load_generator_smoke.sh HOPFIELDD LOAD_GENERATOR
set -eu
work=$(mktemp -d)
"$1" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 --port_file="$work/ports" --data_dir="$work/data" 2>"$work/server.log" &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 300); do [ -s "$work/ports" ] && break; sleep 0.02; done
port=$(sed -n 's/^grpc_port=//p' "$work/ports")
"$2" --target="127.0.0.1:$port" --patterns=2000 --duration_seconds=0.5 | tee "$work/out"
grep -q '^retrieve .*errors=0 ' "$work/out"
grep -q '^ping .*errors=0 ' "$work/out"
grep -q '^overhead .*p50=' "$work/out"
grep -q '^target .*: \(met\|missed\)$' "$work/out"
kill -TERM $pid
wait $pid
