#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang (build-fuzz, -DSLMOPS_FUZZ=ON: ASan,
# UBSan, libFuzzer) and runs each for RUNS executions from its seed corpus, one target at a
# time. Writes executions, exec/s and coverage (cov:/ft: of libFuzzer's last line) per target
# into docs/reliability.md, between the fuzz-results markers.
#
# Usage: bench/fuzz.sh [TARGET...]        (default: every target)
#   RUNS=1000000       executions per target
#   FUZZ_BUILD=build-fuzz
#   FUZZ_MAX_TIME=0    seconds per target (0: no limit; the runs count decides)
#   FUZZ_SKIP_BUILD=1  run the binaries as they are (the tree is being edited by others)
#   FUZZ_TABLE_ONLY=1  only rewrite the table from earlier results ($FUZZ_BUILD/fuzz-work/*/result.md)
#
# New corpus entries go to $FUZZ_BUILD/fuzz-work/<target>/corpus (not to the committed seeds),
# crash/leak/oom/timeout inputs to $FUZZ_BUILD/fuzz-work/<target>/artifacts/. When a finding
# stops a target before RUNS, the script records it and runs the rest in fork mode with
# -ignore_crashes/-ignore_ooms/-ignore_timeouts, so the target still gets its RUNS; the table
# then says how many findings the run saw.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-1000000}
BUILD=${FUZZ_BUILD:-build-fuzz}
MAX_TIME=${FUZZ_MAX_TIME:-0}
ALL_TARGETS=(onnx_load external_data npz recipe random_feeds tokenizer safetensors jinja)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")

dict_for() {
  case $1 in
    onnx_load|external_data|random_feeds) echo tests/fuzz/onnx.dict ;;
    npz) echo tests/fuzz/npz.dict ;;
    recipe) echo tests/fuzz/recipe.dict ;;
    tokenizer) echo tests/fuzz/tokenizer.dict ;;
    jinja) echo tests/fuzz/jinja.dict ;;
    safetensors) echo tests/fuzz/npz.dict ;;
  esac
}

[ "${FUZZ_TABLE_ONLY:-0}" = 1 ] && TARGETS=() && FUZZ_SKIP_BUILD=1
if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ] && [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLMOPS_FUZZ=ON >/dev/null || exit 1
fi
if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
  [ ${#TARGETS[@]} -gt 0 ] && { cmake --build "$BUILD" -j2 --target "${TARGETS[@]/#/fuzz_}" || exit 1; }
fi

# Fields of libFuzzer's status line ("#1000000 DONE cov: 1234 ft: 5678 corp: ... exec/s: 812 ...").
field() { sed -n "s|.* $1: \([^ ]*\).*|\1|p" <<<"$2"; }

for t in ${TARGETS[@]+"${TARGETS[@]}"}; do
  work=$BUILD/fuzz-work/$t
  mkdir -p "$work/corpus" "$work/artifacts"
  log=$work/fuzz.log
  bin=$BUILD/tests/fuzz/fuzz_$t
  common=(-timeout=10 -rss_limit_mb=4096 -dict="$(dict_for "$t")" -close_fd_mask=1 -print_final_stats=1
          -max_total_time="$MAX_TIME" -artifact_prefix="$work/artifacts/")
  echo "fuzz: $t: $RUNS runs (log: $log)" >&2
  start=$(date +%s)
  "$bin" -runs="$RUNS" "${common[@]}" "$work/corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  mode=plain
  findings=0
  if [ "$rc" -ne 0 ]; then
    # A finding stopped the run: libFuzzer printed its last status line before the report.
    findings=1
    done_runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
    echo "fuzz: $t: finding after ${done_runs:-0} runs (exit $rc); continuing in fork mode" >&2
    rest=$((RUNS - ${done_runs:-0}))
    "$bin" -runs="$rest" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 "${common[@]}" \
      "$work/corpus" "tests/fuzz/corpus/$t" >>"$log" 2>&1
    mode=fork
    # Fork mode's status lines: "#N: cov: C ft: F corp: ... exec/s: E oom/timeout/crash: a/b/c time: T ..."
    last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1)
    forked=$(sed -n 's/^#\([0-9]*\):.*/\1/p' <<<"$last")
    done_runs=$(( ${done_runs:-0} + ${forked:-0} ))
    otc=$(field 'oom/timeout/crash' "$last")
    [ -n "$otc" ] && findings=$((1 + $(tr '/' '+' <<<"$otc")))
    [ -n "$forked" ] || echo "fuzz: $t: no fork-mode status line in $log" >&2
  fi
  secs=$(( $(date +%s) - start ))
  cov=$(field cov "$last")
  ft=$(field ft "$last")
  execs=$(( ${done_runs:-0} / (secs > 0 ? secs : 1) ))
  arts=$(ls "$work/artifacts" 2>/dev/null | wc -l)
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "${done_runs:-0}" "$execs" "${cov:-?}" "${ft:-?}" \
    "$secs" "$findings ($arts files)" "$mode" >"$work/result.md"
  cat "$work/result.md" >&2
done

# The table in docs/reliability.md: one row per target that has a result (this run or earlier).
doc=docs/reliability.md
table=$(mktemp)
{
  echo "| target | executions | exec/s (overall) | cov | ft | seconds | findings (artifacts) | mode |"
  echo "|---|---|---|---|---|---|---|---|"
  for t in "${ALL_TARGETS[@]}"; do
    [ -f "$BUILD/fuzz-work/$t/result.md" ] && cat "$BUILD/fuzz-work/$t/result.md"
  done
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores, $(clang --version | head -1), RUNS=$RUNS, by bench/fuzz.sh."
} >"$table"
if grep -q '<!-- fuzz-results:begin -->' "$doc" 2>/dev/null; then
  awk -v tf="$table" '
    /<!-- fuzz-results:begin -->/ { print; while ((getline l < tf) > 0) print l; skip = 1; next }
    /<!-- fuzz-results:end -->/ { skip = 0 }
    !skip { print }' "$doc" >"$doc.tmp" && mv "$doc.tmp" "$doc"
else
  echo "fuzz: $doc has no fuzz-results markers; table:" >&2
  cat "$table" >&2
fi
rm -f "$table"
