#!/usr/bin/env bash
# Quantized (or pruned) model latency next to the same model in fp32 and next to ONNX Runtime:
# one line per (model, threads) with slmops' and ORT's median p50 and their ratios, and each
# runtime's time against its own time on BASE/fp32.
#
# usage: bench/quant_speed.sh [--threads "1 2"] [--samples K] [--warmup W] NAME=MODEL:INPUT=DIMS ...
#
#   NAME=MODEL:INPUT=DIMS  a label, the .onnx file and the shape of its one input (DIMS like
#                          1x128 or 1x3x224x224). A label of the form BASE/VARIANT is compared
#                          with the line labelled BASE/fp32 (same base), if there is one.
#   --threads LIST         intra-op thread counts (default "1 2")
#   --samples K            timed runs per measurement (default 10)
#   --warmup W             untimed runs first (default 2)
#   --cpu                  process CPU time instead of wall time, both sides: on a machine shared
#                          with other work wall time also counts the waits for a core. slmops
#                          then runs through $SLMOPS_BUILD/bench/slmops_op_profile --latency-only
#                          (cpu_ms_p50; the graph as given, without evaluate's optimize pass),
#                          ORT through ort_latency.js's cpu_ms.p50.
#
# slmops: $SLMOPS_BUILD/slmops (default build-h2 in the source tree) --threads N evaluate MODEL --random
#         --shape INPUT=DIMS --samples K --warmup W --metrics latency --json
# ORT:    node bench/ort_latency.js time MODEL --shape INPUT=DIMS --threads N --samples K
#         --warmup W (graphOptimizationLevel 'all'), onnxruntime-node from tests/interop.
# Prints a Markdown table on stdout; never fails on a time (bench/ rule).
set -euo pipefail

THREADS="1 2"
SAMPLES=10
WARMUP=2
CPU=0
die() { echo "quant_speed: error: $*" >&2; exit 1; }
CASES=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) [[ $# -ge 2 ]] || die "--threads needs a value"; THREADS="$2"; shift 2 ;;
    --samples) [[ $# -ge 2 ]] || die "--samples needs a value"; SAMPLES="$2"; shift 2 ;;
    --warmup) [[ $# -ge 2 ]] || die "--warmup needs a value"; WARMUP="$2"; shift 2 ;;
    --cpu) CPU=1; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1'" ;;
    *) CASES+=("$1"); shift ;;
  esac
done
[[ ${#CASES[@]} -gt 0 ]] || die "no models given (NAME=MODEL:INPUT=DIMS)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SLMOPS="${SLMOPS_BUILD:-$ROOT/build-h2}/slmops"
[[ -x "$SLMOPS" ]] || die "$SLMOPS not found; build it or set SLMOPS_BUILD"
PROFILE="${SLMOPS_BUILD:-$ROOT/build-h2}/bench/slmops_op_profile"
ORT_FIELD='.latency_ms.p50'
if [[ $CPU == 1 ]]; then
  [[ -x "$PROFILE" ]] || die "$PROFILE not found (--cpu); build the slmops_op_profile target"
  ORT_FIELD='.cpu_ms.p50'
fi

declare -A SL_MS ORT_MS
unit="ms"
[[ $CPU == 1 ]] && unit="CPU ms"
echo "| model | threads | slmops $unit | ORT $unit | slmops/ORT | slmops vs own fp32 | ORT vs own fp32 |"
echo "|---|---|---|---|---|---|---|"
for t in $THREADS; do
  for c in "${CASES[@]}"; do
    name="${c%%=*}"; rest="${c#*=}"; model="${rest%%:*}"; shape="${rest#*:}"
    [[ -f "$model" ]] || die "$name: no file $model"
    if [[ $CPU == 1 ]]; then
      sl=$("$PROFILE" "$model" "$shape" --threads "$t" --runs "$SAMPLES" --warmup "$WARMUP" --latency-only \
           2>/dev/null | jq -r '.cpu_ms_p50')
    else
      sl=$("$SLMOPS" --threads "$t" evaluate "$model" --random --shape "$shape" \
            --samples "$SAMPLES" --warmup "$WARMUP" --metrics latency --json 2>/dev/null |
           jq -r '.. | objects | select(has("p50")) | .p50' | head -1)
    fi
    ort=$(node "$ROOT/bench/ort_latency.js" time "$model" --shape "$shape" --threads "$t" --samples "$SAMPLES" \
            --warmup "$WARMUP" 2>/dev/null | jq -r "$ORT_FIELD")
    SL_MS["$name/$t"]=$sl
    ORT_MS["$name/$t"]=$ort
    base="${name%/*}"
    own="-" ort_own="-"
    if [[ "$name" == */* && "$name" != */fp32 && -n "${SL_MS[$base/fp32/$t]:-}" ]]; then
      own=$(awk -v a="$sl" -v b="${SL_MS[$base/fp32/$t]}" 'BEGIN{printf "%.2f", a/b}')
      ort_own=$(awk -v a="$ort" -v b="${ORT_MS[$base/fp32/$t]}" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "-" }')
    fi
    ratio=$(awk -v a="$sl" -v b="$ort" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "-" }')
    printf "| %s | %s | %.1f | %.1f | %s | %s | %s |\n" "$name" "$t" "$sl" "$ort" "$ratio" "$own" "$ort_own"
  done
done
