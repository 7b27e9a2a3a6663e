#!/usr/bin/env bash
# Quantization and conversion throughput and memory: `slmops quantize` (int4-weight RTN,
# int8-dynamic) and `slmops convert --to fp16` on a synthetic ~500 MB float32 transformer, next
# to a plain `cp` of the same files.
#
# usage: bench/quantize_bench.sh [--mb 500] [--runs 3] [--threads 2] [--modes "int4-weight int8-dynamic fp16"]
#
# Expects a built tree in $SLMOPS_BUILD (default ./build) with slmops and
# bench/slmops_make_model. Generates the model (weights as external data) in a temporary
# folder under ${TMPDIR:-/tmp} (removed at exit); per run and mode it times
#   (a) cp of model.onnx + model.onnx.data into a new folder (the peer: moving the bytes), and
#   (b) slmops -q --threads T quantize MODEL -o OUT --mode MODE (for fp16 / bf16:
#       convert MODEL -o OUT --to MODE) under /usr/bin/time -f %M.
# Warm page cache for both (the input was just written), `sync` untimed before each. Checks
# (untimed) that every output loads (`slmops inspect --json`) and runs on a random input.
# Prints a Markdown table of medians on stdout: time / cp time, and peak RSS / model size.
# Targets (issue #5): time <= 2x the copy, peak RSS <= 1.3x the model.
set -euo pipefail
MB=500 RUNS=3 THREADS=2 MODES="int4-weight int8-dynamic fp16"
die() { echo "quantize_bench: error: $*" >&2; exit 1; }
say() { echo "quantize_bench: $*" >&2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mb) MB="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
BUILD="${SLMOPS_BUILD:-./build}"
SLMOPS="$BUILD/slmops"
MAKE_MODEL="$BUILD/bench/slmops_make_model"
[[ -x "$SLMOPS" && -x "$MAKE_MODEL" ]] || die "build slmops and slmops_make_model in $BUILD first (or set SLMOPS_BUILD)"
[[ -x /usr/bin/time ]] || die "GNU time is needed for peak RSS (apt-get install time)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/slmops-quant-bench.XXXXXX")"
trap 'rm -rf -- "$WORK"' EXIT
now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

"$MAKE_MODEL" "$WORK/model.onnx" --mb "$MB" --external --seed 1 >&2
bytes=$(( $(stat -c %s "$WORK/model.onnx") + $(stat -c %s "$WORK/model.onnx.data") ))
say "model: $bytes bytes; slmops $("$SLMOPS" --version); $THREADS thread(s); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| mode | model bytes | cp s | slmops s | slmops/cp | peak RSS MiB | RSS/model | output bytes | targets |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for mode in $MODES; do
  case $mode in
    fp16|bf16) cmd=(convert "$WORK/model.onnx" -o "$WORK/out/model.onnx" --to "$mode") ;;
    *) cmd=(quantize "$WORK/model.onnx" -o "$WORK/out/model.onnx" --mode "$mode") ;;
  esac
  cp_t=() sl_t=() rss=()
  for ((r = 1; r <= RUNS; r++)); do
    rm -rf -- "$WORK/cp" "$WORK/out"; mkdir -p "$WORK/cp" "$WORK/out"
    sync; t0=$(now_ns); cp -- "$WORK/model.onnx" "$WORK/model.onnx.data" "$WORK/cp/"; t1=$(now_ns)
    cp_t+=("$(secs "$t0" "$t1")"); rm -rf -- "$WORK/cp"
    sync; t0=$(now_ns)
    /usr/bin/time -f %M -o "$WORK/rss.txt" "$SLMOPS" -q --threads "$THREADS" "${cmd[@]}" >/dev/null ||
      die "$mode run $r: ${cmd[0]} failed"
    t1=$(now_ns)
    sl_t+=("$(secs "$t0" "$t1")"); rss+=("$(tail -n 1 "$WORK/rss.txt")")
    say "$mode run $r/$RUNS: cp ${cp_t[-1]} s, slmops ${sl_t[-1]} s, peak RSS ${rss[-1]} KiB"
  done
  out_bytes=$(( $(stat -c %s "$WORK/out/model.onnx") + $(stat -c %s "$WORK/out/model.onnx.data" 2>/dev/null || echo 0) ))
  "$SLMOPS" -q inspect "$WORK/out/model.onnx" --json >/dev/null || die "$mode: the output does not load"
  "$SLMOPS" -q evaluate "$WORK/out/model.onnx" --random --shape input_ids=1x16 --samples 1 --warmup 0 --metrics latency --json >/dev/null \
    || die "$mode: the output does not run"
  c=$(median "${cp_t[@]}") s=$(median "${sl_t[@]}") m=$(median "${rss[@]}")
  ratio=$(awk -v a="$s" -v b="$c" 'BEGIN { printf "%.2f", a / b }')
  rr=$(awk -v k="$m" -v b="$bytes" 'BEGIN { printf "%.2f", k * 1024 / b }')
  verdict=$(awk -v t="$ratio" -v r="$rr" 'BEGIN { printf "time <= 2x: %s; RSS <= 1.3x: %s", (t <= 2 ? "met" : "**missed**"), (r <= 1.3 ? "met" : "**missed**") }')
  echo "| $mode | $bytes | $c | $s | $ratio | $((m / 1024)) | $rr | $out_bytes | $verdict |"
done
