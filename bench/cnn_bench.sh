#!/usr/bin/env bash
# CNN latency benchmark: torchvision resnet18 and mobilenet_v2 (random init, made at bench
# time by bench/make_bench_models.py) in slmops' executor next to ONNX Runtime, batch 1,
# 224x224, 1 and 2 intra-op threads.
#
# usage: bench/cnn_bench.sh [--runs N] [--samples K] [--warmup W] [--models DIR] [--only NAME]
#                           [--before BINARY]
#
#   --runs N         rounds (default 5); the table shows medians of the per-round p50s
#   --samples K      timed runs per measurement (default 30)
#   --warmup W       untimed runs first (default 5)
#   --models DIR     where the .onnx files are or are made (default: a temporary folder)
#   --only NAME      resnet18 or mobilenet_v2
#   --before BINARY  another slmops build timed in the same rounds (a "before" column:
#                    ratios of two builds measured side by side on a busy machine)
#
# Builds nothing: slmops in $SLMOPS_BUILD (default ./build), onnxruntime-node in
# tests/interop/node_modules, Debian's python3-torch/torchvision/onnx for the models.
#   ORT:    bench/ort_latency.js time (intraOpNumThreads N, interOpNumThreads 1, sequential,
#           graphOptimizationLevel 'all')
#   slmops: slmops --threads N evaluate MODEL --random --shape input=1x3x224x224 --samples K
#           --warmup W --metrics latency --json
# Correctness first: ORT's outputs on a seeded random input (batch 1 and 2) must be matched by
# `slmops --threads T evaluate --check` (rtol 1e-4, atol 5e-5) for T = 1 and 2, or the script
# stops (exit 1). In each round the sides run back to back, ORT first in odd rounds and slmops
# first in even rounds. Prints a Markdown table on stdout (wall-clock p50 medians, the ratio
# slmops/ORT and its per-round range, the target: <= 1.2, goal <= 1.0; and the median process
# CPU time of a run on both sides at 1 thread when $SLMOPS_BUILD/bench/slmops_op_profile is
# built: on a loaded machine it is the fairer ratio). Progress goes to stderr.
set -euo pipefail

RUNS=5
SAMPLES=30
WARMUP=5
MODELS=""
ONLY=""
BEFORE=""
die() { echo "cnn_bench: error: $*" >&2; exit 1; }
say() { echo "cnn_bench: $*" >&2; }
usage="usage: bench/cnn_bench.sh [--runs N] [--samples K] [--warmup W] [--models DIR] [--only NAME] [--before BINARY]"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) [[ $# -ge 2 ]] || die "--runs needs a value"; RUNS="$2"; shift 2 ;;
    --samples) [[ $# -ge 2 ]] || die "--samples needs a value"; SAMPLES="$2"; shift 2 ;;
    --warmup) [[ $# -ge 2 ]] || die "--warmup needs a value"; WARMUP="$2"; shift 2 ;;
    --models) [[ $# -ge 2 ]] || die "--models needs a value"; MODELS="$2"; shift 2 ;;
    --only) [[ $# -ge 2 ]] || die "--only needs a value"; ONLY="$2"; shift 2 ;;
    --before) [[ $# -ge 2 ]] || die "--before needs a value"; BEFORE="$2"; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' ($usage)" ;;
  esac
done
for v in RUNS SAMPLES; do [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "--${v,,} must be a positive whole number, got '${!v}'"; done
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "--warmup must be a whole number, got '$WARMUP'"
NAMES=(resnet18 mobilenet_v2)
if [[ -n "$ONLY" ]]; then
  [[ "$ONLY" == resnet18 || "$ONLY" == mobilenet_v2 ]] || die "--only must be resnet18 or mobilenet_v2, got '$ONLY'"
  NAMES=("$ONLY")
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SLMOPS_BUILD:-./build}"
SLMOPS="$BUILD/slmops"
PROFILE="$BUILD/bench/slmops_op_profile"
ORT_JS="$ROOT/bench/ort_latency.js"
[[ -x "$SLMOPS" ]] || die "$SLMOPS not found or not executable; build first or set SLMOPS_BUILD"
[[ -z "$BEFORE" || -x "$BEFORE" ]] || die "--before $BEFORE: not an executable"
command -v node >/dev/null || die "node not found (Node 20 or later is needed for the ORT side)"
command -v jq >/dev/null || die "jq not found (apt-get install jq)"
node -e "require('$ROOT/tests/interop/node_modules/onnxruntime-node')" 2>/dev/null ||
  die "onnxruntime-node does not load; run 'ONNXRUNTIME_NODE_INSTALL=skip npm ci' in tests/interop"
[[ -x "$PROFILE" ]] || { say "$PROFILE not built: no CPU-time columns"; PROFILE=""; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/slmops-cnn-bench.XXXXXX")" || die "cannot create a temporary folder"
trap 'rm -rf -- "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
[[ -n "$MODELS" ]] || MODELS="$WORK/models"
mkdir -p "$MODELS"
missing=()
for m in "${NAMES[@]}"; do [[ -f "$MODELS/$m.onnx" ]] || missing+=("$m"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "making ${missing[*]} in $MODELS"
  /usr/bin/python3 "$ROOT/bench/make_bench_models.py" "$MODELS" --only "$(IFS=,; echo "${missing[*]}")" ||
    die "bench/make_bench_models.py failed (needs python3-torch, python3-torchvision, python3-onnx)"
fi

SIDES=("$SLMOPS")
[[ -n "$BEFORE" ]] && SIDES+=("$BEFORE")
for m in "${NAMES[@]}"; do
  for dims in 1x3x224x224 2x3x224x224; do
    ref="$WORK/ref_${m}_$dims"
    node "$ORT_JS" reference "$MODELS/$m.onnx" "$ref" --shape "input=$dims" --seed 7 >/dev/null || die "$m: ORT failed"
    for bin in "${SIDES[@]}"; do
      for t in 1 2; do
        out=$("$bin" -q --threads "$t" evaluate "$MODELS/$m.onnx" --check --data "$ref" --rtol 1e-4 --atol 5e-5 2>&1) ||
          { echo "$out" >&2; die "WRONG OUTPUT: $bin --threads $t on $m (input=$dims) differs from ONNX Runtime"; }
      done
    done
  done
  say "$m: slmops matches ORT (rtol 1e-4, atol 5e-5) at batch 1 and 2, threads 1 and 2"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ort_run() {  # model threads -> "wall cpu"
  node "$ORT_JS" time "$1" --shape input=1x3x224x224 --threads "$2" --samples "$SAMPLES" --warmup "$WARMUP" |
    jq -r '"\(.latency_ms.p50) \(.cpu_ms.p50)"'
}
slm_run() {  # binary model threads -> wall
  "$1" -q --threads "$3" evaluate "$2" --random --shape input=1x3x224x224 --samples "$SAMPLES" --warmup "$WARMUP" \
    --metrics latency --json --no-progress | jq -r '.metrics.latency_ms.p50'
}
slm_cpu() {  # model -> CPU ms of a run at 1 thread
  "$PROFILE" "$1" input=1x3x224x224 --threads 1 --runs "$SAMPLES" --warmup "$WARMUP" --latency-only | jq -r '.cpu_ms_p50'
}

declare -A ORT ORTC SLM SLMC BEF
say "rounds $RUNS, samples $SAMPLES, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= RUNS; r++)); do
  for m in "${NAMES[@]}"; do
    for t in 1 2; do
      k="$m|$t"
      model="$MODELS/$m.onnx"
      s_cpu="" b=""
      if (( r % 2 )); then
        read -r o o_cpu < <(ort_run "$model" "$t")
        s=$(slm_run "$SLMOPS" "$model" "$t")
        [[ -n "$BEFORE" ]] && b=$(slm_run "$BEFORE" "$model" "$t")
        [[ "$t" == 1 && -n "$PROFILE" ]] && s_cpu=$(slm_cpu "$model")
      else
        [[ "$t" == 1 && -n "$PROFILE" ]] && s_cpu=$(slm_cpu "$model")
        [[ -n "$BEFORE" ]] && b=$(slm_run "$BEFORE" "$model" "$t")
        s=$(slm_run "$SLMOPS" "$model" "$t")
        read -r o o_cpu < <(ort_run "$model" "$t")
      fi
      ORT[$k]+="$o " ORTC[$k]+="$o_cpu " SLM[$k]+="$s "
      [[ -n "$s_cpu" ]] && SLMC[$k]+="$s_cpu "
      [[ -n "$b" ]] && BEF[$k]+="$b "
      say "round $r/$RUNS $m threads $t: ORT $o ms (CPU $o_cpu), slmops $s ms${s_cpu:+ (CPU $s_cpu)}${b:+, before $b ms}, ratio $(awk -v a="$s" -v b="$o" 'BEGIN { printf "%.2f", a / b }')"
    done
  done
done

echo "| model | threads | ORT p50 ms | slmops p50 ms | slmops/ORT | per-round ratios | target (<= 1.2, goal <= 1.0) |$([[ -n "$BEFORE" ]] && echo " before p50 ms | before/ORT |") ORT CPU ms | slmops CPU ms | CPU ratio |"
echo "| --- | ---: | ---: | ---: | ---: | --- | --- |$([[ -n "$BEFORE" ]] && echo " ---: | ---: |") ---: | ---: | ---: |"
for m in "${NAMES[@]}"; do
  for t in 1 2; do
    k="$m|$t"
    read -r -a os <<<"${ORT[$k]}"
    read -r -a ss <<<"${SLM[$k]}"
    mo=$(median "${os[@]}")
    ms=$(median "${ss[@]}")
    ratios=()
    for ((i = 0; i < ${#os[@]}; i++)); do ratios+=("$(awk -v a="${ss[i]}" -v b="${os[i]}" 'BEGIN { printf "%.2f", a / b }')"); done
    lo=$(printf '%s\n' "${ratios[@]}" | sort -g | head -1)
    hi=$(printf '%s\n' "${ratios[@]}" | sort -g | tail -1)
    ratio=$(awk -v a="$ms" -v b="$mo" 'BEGIN { printf "%.2f", a / b }')
    verdict=$(awk -v x="$ratio" 'BEGIN { if (x <= 1.0) print "met (goal met)"; else if (x <= 1.2) print "met"; else print "**missed**" }')
    before_cols=""
    if [[ -n "$BEFORE" ]]; then
      read -r -a bs <<<"${BEF[$k]}"
      mb=$(median "${bs[@]}")
      before_cols=$(awk -v a="$mb" -v b="$mo" 'BEGIN { printf " %.2f | %.2f |", a, a / b }')
    fi
    cpu_cols="- | - | -"
    if [[ -n "${SLMC[$k]:-}" ]]; then
      read -r -a oc <<<"${ORTC[$k]}"
      read -r -a sc <<<"${SLMC[$k]}"
      cpu_cols=$(awk -v a="$(median "${sc[@]}")" -v b="$(median "${oc[@]}")" 'BEGIN { printf "%.2f | %.2f | %.2f", b, a, a / b }')
    fi
    printf '| %s | %s | %.2f | %.2f | %s | %s-%s | %s |%s %s |\n' "$m" "$t" "$mo" "$ms" "$ratio" "$lo" "$hi" "$verdict" "$before_cols" "$cpu_cols"
  done
done
echo
echo "Batch 1, 224x224. Medians over $RUNS rounds of each run's p50 (wall clock, $SAMPLES samples after $WARMUP warm-up runs). ORT: onnxruntime-node, CPU EP, graphOptimizationLevel all, sequential, interOpNumThreads 1. CPU columns (1 thread): median process CPU time of a run (ORT: process.cpuUsage; slmops: bench/slmops_op_profile --latency-only)."
