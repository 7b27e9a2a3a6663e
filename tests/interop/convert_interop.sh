#!/usr/bin/env bash
# `slmops convert` (#13) checked in ONNX Runtime.
# --opset: see the end of the file.
# --ir-version: every pytorch-converted and pytorch-operator model of libonnx-testdata (IR 3,
# opsets 6-9) rewritten as IR 7 runs in ORT and agrees with the original there.
# --to fp16|bf16 on the fixture models:
#  - each converted model loads and runs in ORT on the fixture's real data, and against the
#    float model in ORT: CNN top-1 agreement >= 0.99, LM perplexity within 1% (printed);
#  - --keep-io-types keeps the graph's input and output types, without it they are 16-bit;
#  - --to mixed --calib-data (float16 except what overflows on the data; io types kept) too;
#  - no initializer is left unread or duplicated (a cleanup of the converted model removes
#    and merges nothing);
#  - slmops' own executor runs the converted models too: evaluate --baseline FP32 gives the
#    same bars (top-1 agreement >= 0.99 for the CNN; LM perplexity within 1%);
#  - bfloat16: ONNX Runtime's CPU provider has no bfloat16 kernels for most ops (and does not
#    cast them to float, as it does for float16), so there the model must pass ORT's loading
#    and type checks up to the kernel lookup, and its numbers are checked in slmops' executor.
# Usage: convert_interop.sh SLMOPS NPZ_TO_PB SOURCE_DIR
set -u
S=$1
NPZ_TO_PB=$2
SRC=$3
HERE=$(cd "$(dirname "$0")" && pwd)
FX=$SRC/tests/fixtures
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-f16-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
node "$HERE/check_ort.js" >/dev/null || { echo "ONNX Runtime is not installed (see tests/interop/README.md)"; exit 1; }
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

# io_types MODEL: "input-dtypes -> output-dtypes" from inspect --json.
io_types() {
  "$S" -q inspect "$1" --json | node -e "let s = ''; process.stdin.on('data', (d) => s += d).on('end', () => {
    const r = JSON.parse(s); console.log(r.inputs.map((v) => v.dtype).join(',') + ' -> ' + r.outputs.map((v) => v.dtype).join(','));
  })"
}

for spec in cnn:cnn_digits:cnn_digits_test.npz:540:cnn_digits_calib.npz lm:gpt_bytes:lm_eval.npz:16:lm_calib.npz \
            lm:llama_bytes:lm_eval.npz:16:lm_calib.npz; do
  IFS=: read -r kind model data samples calib <<<"$spec"
  fp="$FX/$model.onnx"
  "$NPZ_TO_PB" "$fp" "$FX/$data" "$WORK/$model-in" --samples "$samples" || { bad "$model: inputs"; continue; }
  fp_io=$(io_types "$fp")
  for variant in "fp16" "fp16 --keep-io-types" "bf16 --keep-io-types" "fp16 --op-block-list Softmax,LayerNormalization,Erf" \
                 "mixed --calib-data $FX/$calib"; do
    name="$model --to ${variant/$FX\//}"
    tag=$(tr -c 'a-zA-Z0-9' '_' <<<"$variant")
    low="$WORK/$model-$tag.onnx"
    # shellcheck disable=SC2086
    if ! err=$("$S" -q convert "$fp" -o "$low" --to $variant 2>&1 >/dev/null); then bad "$name: convert: $err"; continue; fi
    io=$(io_types "$low")
    case $variant in
      *keep-io-types* | mixed*) want=$fp_io ;;
      fp16*) want=$(sed 's/float32/float16/g; s/\bfloat\b/float16/g' <<<"$fp_io") ;;
    esac
    if [ "$io" = "$want" ]; then ok "$name: graph inputs -> outputs $io"; else bad "$name: io types $io, expected $want"; fi
    "$NPZ_TO_PB" "$low" "$FX/$data" "$WORK/$model-$tag-in" --samples "$samples" || { bad "$name: inputs"; continue; }
    if q=$(node "$HERE/float16_quality.js" "$kind" "$fp" "$WORK/$model-in" "$low" "$WORK/$model-$tag-in" 2>&1); then
      ok "$name: runs in ONNX Runtime, against float in ORT: $q"
    elif [[ $variant == bf16* && $q == *"Could not find an implementation for"* ]]; then
      # ORT's CPU provider has bfloat16 kernels for almost no op (and, unlike float16, does not
      # cast them to float itself): the model passed ORT's loading and type checks up to the
      # kernel lookup; its numbers are checked in slmops' executor below.
      ok "$name: valid for ONNX Runtime up to the CPU kernel lookup (${q##*Could not find an implementation for })"
    else
      bad "$name: ONNX Runtime: $q"
    fi
    rep=$("$S" -q convert "$low" -o "$WORK/again.onnx" --json)
    if node -e "const r = JSON.parse(process.argv[1]); const c = r.steps[0].report;
                process.exit(c.unused_initializers_removed === 0 && c.duplicate_initializers_merged === 0 ? 0 : 1)" "$rep"; then
      ok "$name: no initializer unread or duplicated"
    else
      bad "$name: cleanup of the converted model still finds work: $rep"
    fi
    # slmops' executor: the same bars against the float model (fidelity's top-1 agreement is
    # per row for the CNN and per token for the LMs).
    ev=$("$S" -q evaluate "$low" --data "$FX/$data" --batch-size 8 --baseline "$fp" --json 2>&1)
    if node -e "const r = JSON.parse(process.argv[1]); const a = r.metrics.fidelity.top1_agreement;
                let line = 'top-1 agreement ' + a, ok = a >= 0.99;
                if ('$kind' === 'lm') {
                  const p = r.metrics.perplexity, b = r.baseline.metrics.perplexity;
                  line += ', perplexity ' + p.toFixed(4) + ' vs float ' + b.toFixed(4);
                  ok = Math.abs(p / b - 1) <= 0.01 && a >= 0.95;
                }
                console.log(line); process.exit(ok ? 0 : 1)" "$ev" > "$WORK/ev.txt"; then
      ok "$name: slmops' executor: $(cat "$WORK/ev.txt")"
    else
      bad "$name: slmops evaluate: $(cat "$WORK/ev.txt") $(head -c 300 <<<"$ev")"
    fi
  done
done
# Parameters per dtype, before and after, in the --json report and in inspect: with
# LayerNormalization blocked its scale and bias stay float, everything else is float16, and
# the totals match.
rep=$("$S" -q convert "$FX/gpt_bytes.onnx" -o "$WORK/pd.onnx" --to fp16 --op-block-list LayerNormalization --json)
insp=$("$S" -q inspect "$WORK/pd.onnx" --json)
if line=$(node -e "const r = JSON.parse(process.argv[1]).steps.find((s) => s.pass === 'to-float16').report;
    const i = JSON.parse(process.argv[2]).parameters_by_dtype;
    const b = r.parameters_by_dtype_before, a = r.parameters_by_dtype_after;
    const sum = (o) => Object.values(o).reduce((x, y) => x + y, 0);
    console.log('before ' + JSON.stringify(b) + ', after ' + JSON.stringify(a) + ', inspect ' + JSON.stringify(i));
    process.exit(Object.keys(b).join() === 'float' && sum(a) === sum(b) && a.float > 0 && a.float16 > a.float &&
                 JSON.stringify(i) === JSON.stringify(a) ? 0 : 1)" "$rep" "$insp"); then
  ok "parameters per dtype: $line"
else
  bad "parameters per dtype: $line"
fi
for set in pytorch-converted pytorch-operator; do
  if bash "$HERE/cleanup_differential.sh" "$S" "/usr/share/libonnx-testdata/data/$set" --ir-version 7 > "$WORK/ir.log" 2>&1; then
    ok "--ir-version 7 on $set: $(head -1 "$WORK/ir.log"); in ORT against the originals: $(tail -1 "$WORK/ir.log")"
  else
    bad "--ir-version 7 on $set: $(grep -E 'FAIL|differ|error' "$WORK/ir.log" | head -3)"
  fi
done
# --opset: every pytorch-converted / pytorch-operator model (opsets 6-9) converted to 13 and to
# 17 agrees with the original in ORT on its test data (rtol 1e-4, atol 1e-5); quantize accepts
# the converted old models that have something to quantize (leaving IR 3, their
# weights-as-graph-inputs become plain initializers; --optimize folds a weight behind a
# Transpose, as in test_Linear_no_bias, into a constant the quantizer can read).
for target in 13 17; do
  for set in pytorch-converted pytorch-operator; do
    if COMPARE_ARGS="--rtol 1e-4 --atol 1e-5" bash "$HERE/cleanup_differential.sh" "$S" \
         "/usr/share/libonnx-testdata/data/$set" --opset $target > "$WORK/op.log" 2>&1; then
      ok "--opset $target on $set: $(head -1 "$WORK/op.log"); in ORT against the originals: $(tail -1 "$WORK/op.log")"
    else
      bad "--opset $target on $set: $(grep -E 'FAIL|differ|error' "$WORK/op.log" | head -3)"
    fi
  done
done
# --opset 13 down from 14-17: the fixture models (opset 17: LayerNormalization is written in
# older ops, Where/Add/Relu... go through the checked down-adapters) agree with the originals
# in ORT (the decomposed LayerNormalization within 1e-4) and in slmops' evaluate (perplexity).
for spec in cnn_digits:cnn_digits_test.npz:64:1e-5 gpt_bytes:lm_eval.npz:8:1e-4 llama_bytes:lm_eval.npz:8:1e-5; do
  IFS=: read -r model data samples atol <<<"$spec"
  fp="$FX/$model.onnx"
  down="$WORK/$model-13.onnx"
  if ! err=$("$S" -q convert "$fp" -o "$down" --opset 13 2>&1 >/dev/null); then bad "$model --opset 13: $err"; continue; fi
  "$NPZ_TO_PB" "$fp" "$FX/$data" "$WORK/$model-13-in" --samples "$samples" || { bad "$model: inputs"; continue; }
  if c=$(node "$HERE/compare_models.js" "$down" "$fp" "$WORK/$model-13-in" --rtol 1e-4 --atol "$atol" 2>&1); then
    ok "$model 17 -> 13 ($("$S" -q inspect "$down" --json | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const r=JSON.parse(s);console.log('opset ' + JSON.stringify(r.opsets) + ', ' + r.nodes + ' nodes')})")): in ORT against the original: ${c#compare_models: }"
  else
    bad "$model 17 -> 13 in ORT: $c"
  fi
  if [ "$model" != cnn_digits ]; then
    ev=$("$S" -q evaluate "$down" --data "$FX/$data" --baseline "$fp" --json 2>&1)
    if line=$(node -e "const r = JSON.parse(process.argv[1]); const p = r.metrics.perplexity, b = r.baseline.metrics.perplexity;
                console.log('perplexity ' + p.toFixed(6) + ' vs ' + b.toFixed(6)); process.exit(Math.abs(p / b - 1) <= 1e-4 ? 0 : 1)" "$ev"); then
      ok "$model 17 -> 13 in slmops evaluate: $line"
    else
      bad "$model 17 -> 13 in slmops evaluate: $line $(head -c 300 <<<"$ev")"
    fi
  fi
done
# Every libonnx-testdata node model of opset 14-17 taken to 13: the ones converted agree with
# the originals in ORT on their test data; every refusal is one line that names the op that
# has no form in 13 (Trilu, GridSample, DFT, an attribute such as Reshape allowzero=1, ...).
: > "$WORK/down.tsv"
n_conv=0 n_ref=0 n_badref=0
for m in /usr/share/libonnx-testdata/data/node/*/model.onnx; do
  dir=$(dirname "$m")
  [ -d "$dir/test_data_set_0" ] || continue
  v=$("$S" -q inspect "$m" --json | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const o=JSON.parse(s).opsets;console.log(o['ai.onnx'] ?? o[''] ?? 0)})")
  [ "$v" -ge 14 ] || continue
  out="$WORK/down-$(basename "$dir").onnx"
  if err=$("$S" -q convert "$m" -o "$out" --opset 13 2>&1 >/dev/null); then
    n_conv=$((n_conv + 1))
    printf '%s\t%s\t%s\n' "$out" "$m" "$dir/test_data_set_0" >> "$WORK/down.tsv"
  elif [ "$(grep -c '' <<<"$err")" -eq 1 ] && [[ $err == *"has no form in opset"* || $err == *"layout must have value 0"* ]]; then
    n_ref=$((n_ref + 1))
  else
    n_badref=$((n_badref + 1))
    echo "     $(basename "$dir"): $err"
  fi
done
if c=$(node "$HERE/compare_batch.js" "$WORK/down.tsv" --rtol 1e-4 --atol 1e-5 2>&1) && [ "$n_badref" -eq 0 ] && [ "$n_conv" -gt 100 ]; then
  ok "--opset 13 on the $((n_conv + n_ref)) node models of opsets 14-17: $n_conv converted, in ORT against the originals: $(tail -1 <<<"$c"); $n_ref refused naming the op"
else
  bad "--opset 13 on node models of opsets 14-17: $n_conv converted, $n_badref refused without naming the op: $(tail -3 <<<"$c")"
fi
q_ok=0 q_bad=0
for m in /usr/share/libonnx-testdata/data/pytorch-converted/*/model.onnx; do
  "$S" -q inspect "$m" --json | grep -qE '"(Conv|Gemm|MatMul)"' || continue
  name=$(basename "$(dirname "$m")")
  "$S" -q convert "$m" -o "$WORK/q-in.onnx" --opset 13 --optimize > /dev/null 2>&1 || { q_bad=$((q_bad + 1)); echo "     $name: convert failed"; continue; }
  if err=$("$S" -q quantize "$WORK/q-in.onnx" -o "$WORK/q-out.onnx" --mode int8-dynamic --op-types Conv,MatMul,Gemm 2>&1 >/dev/null) &&
     node "$HERE/check_ort.js" > /dev/null && node -e "
       const ort = require('$HERE/node_modules/onnxruntime-node');
       ort.InferenceSession.create('$WORK/q-out.onnx').then(() => process.exit(0), (e) => { console.error(e.message); process.exit(1); })"; then
    q_ok=$((q_ok + 1))
  else
    q_bad=$((q_bad + 1))
    echo "     $name: $err"
  fi
done
if [ "$q_bad" -eq 0 ] && [ "$q_ok" -gt 0 ]; then ok "quantize int8-dynamic accepts $q_ok old models after --opset 13 (each loads in ORT)"
else bad "quantize after --opset 13: $q_ok accepted, $q_bad refused"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
