#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, runs ctest (unit, fuzz
# corpus replay, end to end), then the same suite under ASan+UBSan, then the
# manifest fuzzer for a bounded time.
#   GW_SANITIZE=0        skip the sanitizer pass
#   GW_FUZZ_SECONDS=N    fuzzing time (default 60, 0 skips)
#   GW_COVERAGE=1        instead: one gcc --coverage build (build-cov), the same ctest,
#                        then gcovr line and branch figures over lib/ and agent/
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

contrib/install-deps.sh test

echo "== style (.clang-format)"
clang-format --dry-run --Werror $(git ls-files '*.c' '*.h')
echo "== layers (contrib/layers.txt)"
contrib/check-layers

if [[ ${GW_COVERAGE:-0} != 0 ]]; then
  echo "== build with --coverage"
  cmake -S . -B build-cov -DGW_WERROR=ON -DCMAKE_BUILD_TYPE=Debug -DGW_COVERAGE=ON -DGW_TESTS=ON >/dev/null
  cmake --build build-cov -j "$jobs"
  find build-cov -name '*.gcda' -delete
  echo "== tests with --coverage"
  # a failing test still leaves its counts: report them, then fail
  rc=0
  ctest --test-dir build-cov --output-on-failure || rc=$?
  echo "== coverage of lib/ and agent/"
  gcovr --root . --filter 'lib/' --filter 'agent/' --exclude-unreachable-branches --gcov-ignore-parse-errors \
    --exclude-throw-branches --sort-percentage --print-summary build-cov
  exit "$rc"
fi

secs=${GW_FUZZ_SECONDS:-60}
if [[ $secs != 0 ]]; then
  # clang with -Werror builds the fuzz targets first: a warning only clang gives
  # fails here in minutes, not after the suites
  echo "== build the fuzz targets (clang)"
  CC=clang cmake -S . -B build-fuzz -DGW_WERROR=ON -DGW_FUZZ=ON -DGW_TESTS=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-fuzz -j "$jobs" --target fuzz_manifest fuzz_manifest_struct fuzz_qmp fuzz_engine fuzz_state fuzz_record fuzz_http fuzz_manifest_cache
fi

echo "== build"
cmake -S . -B build -DGW_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_TESTS=ON >/dev/null
cmake --build build -j "$jobs"
echo "== tests"
ctest --test-dir build --output-on-failure

if [[ ${GW_SANITIZE:-1} != 0 ]]; then
  echo "== build with ASan+UBSan"
  cmake -S . -B build-asan -DGW_WERROR=ON -DCMAKE_BUILD_TYPE=Debug -DGW_SANITIZE=ON -DGW_TESTS=ON >/dev/null
  cmake --build build-asan -j "$jobs"
  echo "== tests with ASan+UBSan"
  # the fleet simulation (30 agents) runs once, in the normal build
  ctest --test-dir build-asan --output-on-failure -LE fleet
fi

if [[ $secs != 0 ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # the manifest parser gets most of the time; the structure-aware manifest
  # generator, the QMP, Engine, state file and run record readers and the
  # HTTP front and the manifest cache reader a share
  share=$((secs / 4 + 1))
  for target in manifest:$secs manifest_struct:$share qmp:$share engine:$share state:$share record:$share http:$share manifest_cache:$share; do
    name=${target%%:*} t=${target##*:}
    # the structure-aware generator builds inputs at the documented limits: an input may
    # take seconds under ASan on a busy machine; a hang still ends it
    per_input=10
    [[ $name == manifest_struct ]] && per_input=60
    echo "== fuzz $name for ${t}s"
    mkdir "$work/$name"
    cp tests/fuzz/corpus/$name/* "$work/$name/"
    set +e
    build-fuzz/tests/fuzz_$name -max_total_time="$t" -max_len=65536 -rss_limit_mb=2048 -timeout="$per_input" \
      -print_final_stats=1 -artifact_prefix="$work/$name-" "$work/$name" >"$work/$name.log" 2>&1
    rc=$?
    set -e
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done )" "$work/$name.log" || true
    if [[ $rc != 0 ]]; then
      tail -40 "$work/$name.log"
      echo "fuzzer $name found a problem (exit $rc)"
      exit 1
    fi
  done
fi
echo "== all tests passed"
