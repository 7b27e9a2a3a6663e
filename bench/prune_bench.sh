#!/usr/bin/env bash
# Pruning on the GPT-2-small-shaped bench decoder (bench/make_bench_models.py gpt2_small, 124M
# parameters): how long `slmops prune` takes and how much memory it holds (structured 25% and
# 50% of the MLP neurons, magnitude 50%, SparseGPT 50% with calibration), then the latency of
# the structurally pruned models against the unpruned one in ONNX Runtime and in slmops
# (bench/quant_speed.sh: each model in slmops, then in ORT, on random inputs of the same shape;
# each runtime against its own time on the unpruned model).
#
# usage: bench/prune_bench.sh GPT2_SMALL.onnx [--threads T] [--latency-threads "1 2"] [--calib-rows N]
#                               [--seq S] [--samples K] [--cpu] [--skip-sparsegpt]
#
#   --threads T      threads for pruning (default 2)
#   --latency-threads LIST  thread counts of the latency table (default: T)
#   --samples K      timed runs per latency measurement (default 10)
#   --skip-sparsegpt leave out the SparseGPT row (minutes on two cores)
#   --calib-rows N   SparseGPT calibration rows of S random token ids (default 16)
#   --seq S          tokens per row and the latency input 1xS (default 128)
#   --cpu            latency as process CPU time on both sides (quant_speed.sh --cpu)
#
# Peak RSS by GNU time (-f %M) next to the model's bytes (model.onnx + its .data). Prints
# Markdown tables on stdout; never fails on a time (bench/ rule). Needs $SLMOPS_BUILD (default
# ./build) with slmops (and bench/slmops_op_profile for --cpu), jq, and onnxruntime-node in
# tests/interop (npm ci).
set -euo pipefail
die() { echo "prune_bench: error: $*" >&2; exit 1; }
say() { echo "prune_bench: $*" >&2; }
MODEL="" THREADS=2 LAT_THREADS="" ROWS=16 SEQ=128 CPU=() SAMPLES=10 SGPT=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --latency-threads) LAT_THREADS="$2"; shift 2 ;;
    --samples) SAMPLES="$2"; shift 2 ;;
    --skip-sparsegpt) SGPT=0; shift ;;
    --calib-rows) ROWS="$2"; shift 2 ;;
    --seq) SEQ="$2"; shift 2 ;;
    --cpu) CPU=(--cpu); shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1'" ;;
    *) MODEL="$1"; shift ;;
  esac
done
[[ -f "$MODEL" ]] || die "give the gpt2_small.onnx that bench/make_bench_models.py writes"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SLMOPS_BUILD:-./build}"
SLMOPS="$BUILD/slmops"
[[ -x "$SLMOPS" ]] || die "$SLMOPS not found; build it or set SLMOPS_BUILD"
[[ -x /usr/bin/time ]] || die "GNU time is needed for peak RSS (apt-get install time)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/slmops-prune-bench.XXXXXX")"
trap 'rm -rf -- "$WORK"' EXIT
bytes=$(( $(stat -c %s "$MODEL") + $( [[ -f "$MODEL.data" ]] && stat -c %s "$MODEL.data" || echo 0) ))

# Calibration rows: random token ids (the weights are random too; this measures cost, not quality).
awk -v rows="$ROWS" -v seq="$SEQ" 'BEGIN { srand(7); for (r = 0; r < rows; ++r) {
  printf "{\"input_ids\": ["; for (i = 0; i < seq; ++i) printf "%s%d", (i ? "," : ""), int(rand() * 50257); print "]}" } }' \
  > "$WORK/calib.jsonl"

say "model $MODEL: $bytes bytes; slmops $("$SLMOPS" --version); $THREADS thread(s); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| run | seconds | peak RSS MiB | RSS / model bytes | output float parameters |"
echo "| --- | ---: | ---: | ---: | ---: |"
run() {  # NAME OUT ARGS...: times one prune
  local name=$1 out=$2
  shift 2
  local t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -f %M -o "$WORK/rss" "$SLMOPS" -q --threads "$THREADS" prune "$MODEL" -o "$out" "$@" --json \
    > "$WORK/report.json" || die "$name failed"
  t1=$(date +%s%N)
  local rss params
  rss=$(tail -n 1 "$WORK/rss")
  params=$(jq -r '.steps[0].report | (.model_float_parameters_after // .model_float_parameters)' "$WORK/report.json")
  printf "| %s | %.1f | %d | %.2f | %s |\n" "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print (b-a)/1e9}')" \
    $((rss / 1024)) "$(awk -v k="$rss" -v b="$bytes" 'BEGIN{print k*1024/b}')" "$params"
}
mkdir -p "$WORK/s25" "$WORK/s50" "$WORK/mag" "$WORK/sgpt"
run "structured 25% (weight norms)" "$WORK/s25/model.onnx" --method structured --sparsity 0.25
run "structured 50% (weight norms)" "$WORK/s50/model.onnx" --method structured --sparsity 0.5
run "magnitude 50%" "$WORK/mag/model.onnx" --method magnitude --sparsity 0.5
[[ $SGPT == 1 ]] && run "sparsegpt 50% ($ROWS x $SEQ tokens)" "$WORK/sgpt/model.onnx" --method sparsegpt --sparsity 0.5 \
  --calib-data "$WORK/calib.jsonl"
rm -rf "$WORK/mag" "$WORK/sgpt"

echo
SLMOPS_BUILD="$BUILD" bash "$ROOT/bench/quant_speed.sh" "${CPU[@]}" --threads "${LAT_THREADS:-$THREADS}" \
  --samples "$SAMPLES" \
  "gpt2/fp32=$MODEL:input_ids=1x$SEQ" "gpt2/structured25=$WORK/s25/model.onnx:input_ids=1x$SEQ" \
  "gpt2/structured50=$WORK/s50/model.onnx:input_ids=1x$SEQ"
