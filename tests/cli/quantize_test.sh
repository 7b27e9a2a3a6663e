#!/usr/bin/env bash
# quantize end to end on the fixtures: the accuracy bars of the issue, GPTQ beating RTN,
# deterministic output, the subcommand and the recipe writing the same bytes, the per-node
# report, and the accuracy-aware mode excluding nodes to meet a goal it otherwise misses.
# Calibration uses the fixtures' training data (cnn_digits_calib.npz, lm_calib.npz); the
# figures are measured on the held-out sets (cnn_digits_test.npz, lm_eval.npz).
# Usage: quantize_test.sh SLMOPS_BINARY SOURCE_DIR
set -u
S=$1
SRC=$(cd "$2" && pwd)
FX=$SRC/tests/fixtures
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-quant-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
source "$(dirname "$0")/testlib.sh"
# js 'expression over r (the JSON document)' FILE: true when the expression holds.
js() {
  node -e "const fs = require('fs'); const r = JSON.parse(fs.readFileSync('$2', 'utf8'));
           const ok = ($1); if (!ok) { console.error('  got', JSON.stringify(r.metrics || r).slice(0, 600)); process.exit(1); }"
}
# Evaluates MODEL against its float BASELINE on DATA into OUT.json.
ev() { "$S" -q evaluate "$1" --baseline "$2" --data "$3" --batch-size 16 --metrics "$4" --json > "$5"; }
# print the figure a test is about, for the log
show() { node -e "const r = require('$1'); console.log('     ', $2)"; }

CNN=$FX/cnn_digits.onnx
Q="$S -q quantize"

# CNN: int8-dynamic (Conv and Gemm) and int8-static with minmax and entropy.
$Q "$CNN" -o "$WORK/cnn_dyn.onnx" --mode int8-dynamic --op-types Conv,Gemm > /dev/null
ev "$WORK/cnn_dyn.onnx" "$CNN" "$FX/cnn_digits_test.npz" accuracy "$WORK/cnn_dyn.json"
show "$WORK/cnn_dyn.json" "'int8-dynamic accuracy', r.metrics.accuracy, 'float', r.baseline.metrics.accuracy"
check "CNN int8-dynamic: top-1 drop <= 0.5 points" \
  js "r.baseline.metrics.accuracy - r.metrics.accuracy <= 0.005" "$WORK/cnn_dyn.json"
for method in minmax entropy percentile; do
  $Q "$CNN" -o "$WORK/cnn_static_$method.onnx" --mode int8-static --calib-data "$FX/cnn_digits_calib.npz" \
    --calib-method $method > /dev/null
  ev "$WORK/cnn_static_$method.onnx" "$CNN" "$FX/cnn_digits_test.npz" accuracy "$WORK/cnn_static_$method.json"
  show "$WORK/cnn_static_$method.json" "'int8-static $method accuracy', r.metrics.accuracy"
  check "CNN int8-static $method: top-1 drop <= 1 point" \
    js "r.baseline.metrics.accuracy - r.metrics.accuracy <= 0.01" "$WORK/cnn_static_$method.json"
done

# LMs: perplexity increase <= 1% (int8-weight), <= 6% (int4 RTN block 32), GPTQ below RTN.
for lm in gpt_bytes llama_bytes; do
  M=$FX/$lm.onnx
  $Q "$M" -o "$WORK/${lm}_w8.onnx" --mode int8-weight > /dev/null
  ev "$WORK/${lm}_w8.onnx" "$M" "$FX/lm_eval.npz" perplexity "$WORK/${lm}_w8.json"
  show "$WORK/${lm}_w8.json" "'$lm int8-weight ppl', r.metrics.perplexity, 'float', r.baseline.metrics.perplexity"
  check "$lm int8-weight: perplexity +<= 1%" \
    js "r.metrics.perplexity <= 1.01 * r.baseline.metrics.perplexity" "$WORK/${lm}_w8.json"
  for sym in true false; do
    $Q "$M" -o "$WORK/${lm}_rtn_$sym.onnx" --mode int4-weight --block-size 32 --symmetric $sym > /dev/null
    ev "$WORK/${lm}_rtn_$sym.onnx" "$M" "$FX/lm_eval.npz" perplexity "$WORK/${lm}_rtn_$sym.json"
    show "$WORK/${lm}_rtn_$sym.json" "'$lm int4 rtn symmetric=$sym ppl', r.metrics.perplexity"
    # The bar is on the default (asymmetric) form; symmetric blocks lose one level of 16.
    [ $sym = false ] && check "$lm int4 RTN block 32 (default, asymmetric): perplexity +<= 6%" \
      js "r.metrics.perplexity <= 1.06 * r.baseline.metrics.perplexity" "$WORK/${lm}_rtn_$sym.json"
    $Q "$M" -o "$WORK/${lm}_gptq_$sym.onnx" --mode int4-weight --block-size 32 --symmetric $sym --algorithm gptq \
      --calib-data "$FX/lm_calib.npz" > /dev/null
    ev "$WORK/${lm}_gptq_$sym.onnx" "$M" "$FX/lm_eval.npz" perplexity "$WORK/${lm}_gptq_$sym.json"
    show "$WORK/${lm}_gptq_$sym.json" "'$lm int4 gptq symmetric=$sym ppl', r.metrics.perplexity"
    rtn=$(node -e "console.log(require('$WORK/${lm}_rtn_$sym.json').metrics.perplexity)")
    check "$lm int4 GPTQ symmetric=$sym: perplexity below RTN's ($rtn)" \
      js "r.metrics.perplexity < $rtn" "$WORK/${lm}_gptq_$sym.json"
  done
  $Q "$M" -o "$WORK/${lm}_hqq.onnx" --mode int4-weight --block-size 32 --symmetric false --algorithm hqq > /dev/null
  ev "$WORK/${lm}_hqq.onnx" "$M" "$FX/lm_eval.npz" perplexity "$WORK/${lm}_hqq.json"
  show "$WORK/${lm}_hqq.json" "'$lm int4 hqq ppl', r.metrics.perplexity"
  check "$lm int4 HQQ block 32: perplexity +<= 6%" \
    js "r.metrics.perplexity <= 1.06 * r.baseline.metrics.perplexity" "$WORK/${lm}_hqq.json"
done

# Text calibration data (#15): GPTQ calibrated on {"text": ...} rows through --tokenizer writes the
# same bytes as on the same text pre-tokenized to ids; one long text cut by --context-length 64
# gives those rows too. (Compared up to the metadata that records the options, which differ.)
same_model() {
  local a b
  a=$(grep -boa 'slmops.recipe' "$1" | head -1 | cut -d: -f1)
  b=$(grep -boa 'slmops.recipe' "$2" | head -1 | cut -d: -f1)
  # the metadata entry starts 5 bytes before its key: tag, 2-byte length, key tag, key length
  [ -n "$a" ] && [ "$a" = "$b" ] && cmp -s -n $((a - 5)) "$1" "$2"
}
M=$FX/gpt_bytes.onnx
$Q "$M" -o "$WORK/gptq_ids.onnx" --mode int4-weight --algorithm gptq --calib-data "$FX/lm_eval.jsonl" > /dev/null
$Q "$M" -o "$WORK/gptq_text.onnx" --mode int4-weight --algorithm gptq --calib-data "$FX/lm_eval_text.jsonl" \
  --tokenizer "$FX/bytes_tokenizer" > /dev/null
check "GPTQ on text rows with --tokenizer: the same bytes as on the ids" same_model "$WORK/gptq_ids.onnx" "$WORK/gptq_text.onnx"
$Q "$M" -o "$WORK/gptq_long.onnx" --mode int4-weight --algorithm gptq --calib-data "$FX/lm_eval_longtext.jsonl" \
  --tokenizer "$FX/bytes_tokenizer/tokenizer.json" --context-length 64 > /dev/null
check "... and on one long text cut by --context-length 64" same_model "$WORK/gptq_ids.onnx" "$WORK/gptq_long.onnx"
$Q "$M" -o "$WORK/static_text.onnx" --mode int8-static --calib-data "$FX/lm_eval_text.jsonl" \
  --tokenizer "$FX/bytes_tokenizer" > /dev/null
$Q "$M" -o "$WORK/static_ids.onnx" --mode int8-static --calib-data "$FX/lm_eval.jsonl" > /dev/null
check "int8-static calibrated on text rows: the same bytes as on the ids" same_model "$WORK/static_ids.onnx" "$WORK/static_text.onnx"

# Determinism and recipe equivalence; the per-node report.
M=$FX/gpt_bytes.onnx
$Q "$M" -o "$WORK/a.onnx" --mode int4-weight --json > "$WORK/a.json"
$Q "$M" -o "$WORK/b.onnx" --mode int4-weight > /dev/null
check "same input, same bytes" cmp -s "$WORK/a.onnx" "$WORK/b.onnx"
printf '{"input": "%s", "output": "r.onnx", "steps": [{"pass": "quantize", "options": {"mode": "int4-weight"}}]}\n' \
  "$M" > "$WORK/recipe.json"
"$S" -q run "$WORK/recipe.json" > /dev/null
check "recipe and subcommand write the same bytes" cmp -s "$WORK/a.onnx" "$WORK/r.onnx"
check "report: every MatMul with a constant weight quantized, bytes saved" \
  js "r.steps[0].report.nodes_quantized === 13 && r.steps[0].report.weight_bytes_after * 5 < r.steps[0].report.weight_bytes_before" "$WORK/a.json"
$Q "$M" -o "$WORK/ex.onnx" --mode int4-weight --exclude-nodes '/blocks.0/*' --json > "$WORK/ex.json"
check "--exclude-nodes glob keeps those MatMuls float" \
  js "r.steps[0].report.nodes_quantized === 7 && r.steps[0].report.nodes.every(n => !n.node.startsWith('/blocks.0/') || n.how.startsWith('skipped'))" "$WORK/ex.json"

# Accuracy-aware: int4 block 128 symmetric on the GPT misses a tight perplexity goal; the
# mode must return nodes to float until it is met.
$Q "$M" -o "$WORK/plain.onnx" --mode int4-weight --block-size 64 --symmetric true > /dev/null
ev "$WORK/plain.onnx" "$M" "$FX/lm_eval.npz" perplexity "$WORK/plain.json"
goal=$(node -e "const r = require('$WORK/plain.json'); console.log((50 * (r.metrics.perplexity / r.baseline.metrics.perplexity - 1)).toFixed(3))")
check "accuracy-aware: the plain quantization misses the goal (perplexity +$goal% allowed)" \
  js "r.metrics.perplexity > (1 + $goal / 100) * r.baseline.metrics.perplexity" "$WORK/plain.json"
$Q "$M" -o "$WORK/aware.onnx" --mode int4-weight --block-size 64 --symmetric true --max-degradation "perplexity:$goal%" \
  --eval-data "$FX/lm_eval.npz" --calib-data "$FX/lm_calib.npz" --json > "$WORK/aware.json"
rc=$?
check "accuracy-aware: exit 0 and goal met" test $rc -eq 0
check "accuracy-aware: some nodes kept float, fewer than all" \
  js "r.steps[0].report.accuracy_aware.goal_met && r.steps[0].report.accuracy_aware.kept_float.length > 0 && r.steps[0].report.accuracy_aware.kept_float.length < 13" "$WORK/aware.json"
ev "$WORK/aware.onnx" "$M" "$FX/lm_eval.npz" perplexity "$WORK/aware_eval.json"
show "$WORK/aware_eval.json" "'accuracy-aware ppl', r.metrics.perplexity, 'float', r.baseline.metrics.perplexity"
check "accuracy-aware: the written model meets the goal" \
  js "r.metrics.perplexity <= (1 + $goal / 100) * r.baseline.metrics.perplexity" "$WORK/aware_eval.json"
$Q "$M" -o "$WORK/never.onnx" --mode int4-weight --max-degradation "perplexity:-1%" --eval-data "$FX/lm_eval.npz" \
  > /dev/null 2>&1
check "accuracy-aware: a negative goal is refused (exit 2)" test $? -eq 2
finish
