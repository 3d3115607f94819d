#!/bin/bash
# The hopfield-client package as a user gets it: copied out of the checkout
# (so no build/ or egg-info lands in it), pip-installed into a fresh venv
# that sees Debian's python3-grpcio/-protobuf/-numpy, then its unittest
# suite run by that venv's python from outside the source tree (so the
# installed package is what is tested), and the stale-stub check.
#
#   HOPFIELDD=build/dev/server/hopfieldd client/python/tests/run_package_test.sh
set -euo pipefail
: "${HOPFIELDD:?set HOPFIELDD to the hopfieldd binary}"
package=$(cd "$(dirname "$0")/.." && pwd)  # client/python
repo=$(cd "$package/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir "$work/src"
tar -C "$package" --exclude=build --exclude='*.egg-info' --exclude=__pycache__ -cf - . \
  | tar -C "$work/src" -xf -
/usr/bin/python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check \
  --no-build-isolation --no-index "$work/src"

cd "$work"
installed=$("$work/venv/bin/python" -c 'import hopfield_client; print(hopfield_client.__file__)')
case "$installed" in
  "$work/venv/"*) echo "testing the installed $installed" ;;
  *) echo "hopfield_client imported from $installed, not the venv" >&2; exit 1 ;;
esac
export HOPFIELDD HOPFIELD_PROTO_DIR="$repo/proto" PYTHONDONTWRITEBYTECODE=1
"$work/venv/bin/python" -m unittest discover -v -s "$work/src/tests" -t "$work/src/tests"
