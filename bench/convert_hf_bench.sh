#!/usr/bin/env bash
# Checkpoint conversion and decoding speed (issue #14): a Llama-shaped ~500 MB BF16 checkpoint
# made by bench/make_hf_checkpoint.js, converted by `slmops convert HF_DIR -o OUT` (fp32 and
# int4) next to a `cp` of its weights; then greedy decoding of the built fp32 model by
# `slmops generate` next to ONNX Runtime's (bench/ort_decode.js) on the same model.
#
# usage: bench/convert_hf_bench.sh [--mb 500] [--runs 3] [--threads 2] [--new-tokens 64]
# Prints a Markdown table of medians: convert time / cp time, peak RSS / output size, and
# decode tokens/s of slmops and ONNX Runtime with their ratio. Targets: time <= 3x cp,
# RSS <= 1.3x output.
set -euo pipefail
MB=500 RUNS=3 THREADS=2 NEW=64
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mb) MB="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --new-tokens) NEW="$2"; shift 2 ;;
    *) echo "convert_hf_bench: unknown argument '$1'" >&2; exit 1 ;;
  esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
S="${SLMOPS_BUILD:-./build}/slmops"
[[ -x "$S" ]] || { echo "convert_hf_bench: build slmops first (or set SLMOPS_BUILD)" >&2; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/slmops-hf-bench.XXXXXX")"
trap 'rm -rf -- "$WORK"' EXIT
node "$HERE/make_hf_checkpoint.js" "$WORK/ckpt" --mb "$MB" >&2
now() { date +%s%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cp_t=() cpo_t=() conv_t=() conv_rss=() int4_t=() int4_rss=()
for r in $(seq "$RUNS"); do
  sync; rm -rf "$WORK/copy"; mkdir "$WORK/copy"
  t0=$(now); cp "$WORK/ckpt/model.safetensors" "$WORK/copy/"; t1=$(now)
  cp_t+=("$(awk -v a=$t0 -v b=$t1 'BEGIN{print (b-a)/1e9}')")
  for p in fp32 int4; do
    sync; rm -rf "$WORK/out_$p"
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$S" -q --threads "$THREADS" convert "$WORK/ckpt" -o "$WORK/out_$p" --precision $p > /dev/null
    read -r e m < "$WORK/time"
    if [ $p = fp32 ]; then conv_t+=("$e"); conv_rss+=("$m"); else int4_t+=("$e"); int4_rss+=("$m"); fi
  done
  # The peer for the bytes the fp32 conversion writes: cp of its output (page cache warm).
  sync; rm -rf "$WORK/copy_out"; mkdir "$WORK/copy_out"
  t0=$(now); cp "$WORK/out_fp32"/model.onnx* "$WORK/copy_out/"; t1=$(now)
  cpo_t+=("$(awk -v a=$t0 -v b=$t1 'BEGIN{print (b-a)/1e9}')")
done
"$S" -q --threads "$THREADS" convert "$WORK/ckpt" -o "$WORK/out_ort" --target onnxruntime > /dev/null
out_bytes=$(du -bc "$WORK/out_fp32"/model.onnx* | tail -1 | cut -f1)
int4_bytes=$(du -bc "$WORK/out_int4"/model.onnx* | tail -1 | cut -f1)
ck_bytes=$(stat -c %s "$WORK/ckpt/model.safetensors")
cpm=$(printf '%s\n' "${cp_t[@]}" | median); cpo=$(printf '%s\n' "${cpo_t[@]}" | median)
cvm=$(printf '%s\n' "${conv_t[@]}" | median); cvr=$(printf '%s\n' "${conv_rss[@]}" | median)
i4m=$(printf '%s\n' "${int4_t[@]}" | median); i4r=$(printf '%s\n' "${int4_rss[@]}" | median)
# Every run, for the noise (stderr): the medians above hide it.
echo "runs: cp ${cp_t[*]} | cp of the fp32 output ${cpo_t[*]} | fp32 ${conv_t[*]} | int4 ${int4_t[*]}" >&2
ids=$(seq -s, 11 26)
sl=() ol=() slg=() olg=()
slm_rate() {
  "$S" -q --threads "$THREADS" generate "$1" --input-ids "$ids" --max-new-tokens $((NEW + 1)) --ignore-eos --json |
    node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).decode.tokens_per_s))"
}
ort_rate() {
  node "$HERE/ort_decode.js" "$1/model.onnx" "$ids" "$NEW" "$THREADS" |
    node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).decode_tokens_per_s))"
}
for r in $(seq "$RUNS"); do
  sl+=("$(slm_rate "$WORK/out_fp32")"); ol+=("$(ort_rate "$WORK/out_fp32")")
  slg+=("$(slm_rate "$WORK/out_ort")"); olg+=("$(ort_rate "$WORK/out_ort")")
done
slm=$(printf '%s\n' "${sl[@]}" | median); orm=$(printf '%s\n' "${ol[@]}" | median)
slmg=$(printf '%s\n' "${slg[@]}" | median); ormg=$(printf '%s\n' "${olg[@]}" | median)
echo "| measure ($MB MB BF16 checkpoint, $THREADS threads, median of $RUNS) | value | ratio |"
echo "|---|---|---|"
awk -v c="$cpm" -v co="$cpo" -v t="$cvm" -v r="$cvr" -v o="$out_bytes" -v k="$ck_bytes" 'BEGIN {
  printf "| convert fp32: time vs cp of the %.0f MB weights | %.2f s vs %.2f s | %.2f |\n", k/1e6, t, c, t/c;
  printf "| convert fp32: time vs cp of its %.0f MB output | %.2f s vs %.2f s | %.2f |\n", o/1e6, t, co, t/co;
  printf "| convert fp32: peak RSS vs output (%.0f MB) | %.0f MB | %.2f |\n", o/1e6, r/1024, r*1024/o }'
awk -v c="$cpm" -v t="$i4m" -v r="$i4r" -v o="$int4_bytes" 'BEGIN {
  printf "| convert int4: time vs cp | %.2f s | %.2f |\n", t, t/c;
  printf "| convert int4: peak RSS vs output (%.0f MB) | %.0f MB | %.2f |\n", o/1e6, r/1024, r*1024/o }'
awk -v s="$slm" -v o="$orm" -v n="$NEW" 'BEGIN {
  printf "| decode fp32, %d tokens after 16: slmops generate vs ONNX Runtime | %.1f vs %.1f tokens/s | %.2f (ORT time / slmops time) |\n", n, s, o, s/o }'
awk -v s="$slmg" -v o="$ormg" -v n="$NEW" 'BEGIN {
  printf "| decode fp32 --target onnxruntime (GroupQueryAttention), %d tokens: slmops vs ONNX Runtime | %.1f vs %.1f tokens/s | %.2f |\n", n, s, o, s/o }'
