#!/bin/bash
# run_fuzzer.sh FUZZER SECONDS SEEDS REGRESSIONS ARTIFACTS [LIBFUZZER_FLAG...]
#
# A bounded libFuzzer run, as ctest runs it (fuzz/CMakeLists.txt): replays
# every seed in SEEDS and every input in REGRESSIONS (if that folder exists),
# then fuzzes for SECONDS. New corpus entries go to a scratch copy of SEEDS,
# never into the source tree. A crash, sanitizer report, leak, timeout (10 s
# per input) or out-of-memory (2 GiB RSS, 512 MiB in one malloc) fails the
# run and leaves the input in ARTIFACTS.
set -euo pipefail
if [ $# -lt 5 ]; then
  echo "usage: $0 FUZZER SECONDS SEEDS REGRESSIONS ARTIFACTS [FLAG...]" >&2
  exit 2
fi
fuzzer=$1 seconds=$2 seeds=$3 regressions=$4 artifacts=$5
shift 5

work=$(mktemp -d "${TMPDIR:-/tmp}/hopfield_fuzz.XXXXXX")
trap 'rm -rf "${work}"' EXIT
cp -R "${seeds}/." "${work}/"
mkdir -p "${artifacts}"
corpora=("${work}")
if [ -d "${regressions}" ]; then corpora+=("${regressions}"); fi

"${fuzzer}" -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=2048 \
  -malloc_limit_mb=512 -print_final_stats=1 \
  -artifact_prefix="${artifacts}/" "$@" "${corpora[@]}"
