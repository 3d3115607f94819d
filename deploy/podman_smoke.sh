#!/usr/bin/env bash
# Builds the Docker image with podman (no Docker engine needed), runs it and
# calls its health service and /metrics. Not part of `make test` (a full
# image build takes ~15-25 minutes on 2 cores); run it as root or with sudo:
#
#   deploy/podman_smoke.sh                 # build (with the tests) and run
#   RUN_TESTS=0 deploy/podman_smoke.sh     # skip the tests in the build
#   make image-smoke                       # the same
#
# When no registry is reachable, the base image debian:bookworm is made
# locally with debootstrap from the machine's Debian mirror
# (../shared/docs/toolchain.md §7), then tagged so that the Dockerfile's
# `FROM debian:bookworm` resolves to it. podman needs, on these machines:
# chroot isolation for builds (crun cannot run in the hybrid cgroup setup),
# runc with lowered ulimits for `run`, and the docker image format (OCI
# images drop HEALTHCHECK). The container uses the host's network and binds
# loopback ports only; it is stopped by its id.
set -euo pipefail

cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
IMAGE=${IMAGE:-localhost/hopfield:latest}
RUN_TESTS=${RUN_TESTS:-1}
JOBS=${JOBS:-$(nproc)}

need=""
for p in podman runc debootstrap; do
  command -v "$p" >/dev/null || need="$need $p"
done
if [ -n "$need" ]; then
  echo "installing:$need"
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need
fi

if ! $SUDO podman image exists debian:bookworm; then
  if ! $SUDO podman pull -q docker.io/library/debian:bookworm 2>/dev/null; then
    echo "no registry: building debian:bookworm with debootstrap"
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d)
    $SUDO debootstrap --variant=minbase bookworm "$rootfs" "$mirror"
    $SUDO tar -C "$rootfs" -c . | $SUDO podman import - localhost/bookworm-local:latest
    $SUDO rm -rf "$rootfs"
    $SUDO podman tag localhost/bookworm-local:latest debian:bookworm
  fi
fi

echo "building $IMAGE (RUN_TESTS=$RUN_TESTS, JOBS=$JOBS)"
start=$(date +%s)
$SUDO podman build --isolation=chroot --network=host --format docker \
  --build-arg RUN_TESTS="$RUN_TESTS" --build-arg JOBS="$JOBS" \
  --build-arg COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
  -t "$IMAGE" -f Dockerfile .
echo "built in $(( $(date +%s) - start )) s: $($SUDO podman image inspect --format '{{.Size}}' "$IMAGE") bytes"

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
grpc_port=$(free_port)
metrics_port=$(free_port)
volume=$(mktemp -d)
chmod 777 "$volume"   # the image's user (uid 10001) writes its banks here
container=$($SUDO podman --runtime runc run -d --rm --network=host \
  --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
  -e FLAGS_listen="127.0.0.1:$grpc_port" \
  -e FLAGS_metrics_listen="127.0.0.1:$metrics_port" \
  -v "$volume:/data" "$IMAGE")
cleanup() {
  $SUDO podman --runtime runc stop -t 10 "$container" >/dev/null 2>&1 || true
  $SUDO rm -rf "$volume"
}
trap cleanup EXIT

status=""
for _ in $(seq 100); do
  status=$($SUDO podman exec "$container" hopfield --server="127.0.0.1:$grpc_port" \
    --timeout_seconds=2 health 2>/dev/null || true)
  [ "$status" = SERVING ] && break
  sleep 0.3
done
echo "health: ${status:-no answer}"
[ "$status" = SERVING ] || { $SUDO podman logs "$container" | tail -20; exit 1; }
# The image's own HEALTHCHECK (docker format keeps it). podman runs it on
# request here (its timer needs systemd, absent on these machines).
if $SUDO podman --runtime runc healthcheck run "$container"; then
  echo "HEALTHCHECK: healthy"
else
  echo "HEALTHCHECK: unhealthy"
  exit 1
fi
# A bank through the container's CLI, then the metrics it produced.
$SUDO podman exec "$container" hopfield --server="127.0.0.1:$grpc_port" \
  create-bank smoke --dim=4 >/dev/null
families=$(/usr/bin/python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$metrics_port/metrics', timeout=10).read().decode())" \
  | grep -c '^# TYPE hopfield_' || true)
echo "/metrics: $families hopfield_ families"
[ "$families" -gt 10 ] || exit 1
$SUDO podman exec "$container" id
ls -ln "$volume" | head -5
echo "image smoke test passed"
