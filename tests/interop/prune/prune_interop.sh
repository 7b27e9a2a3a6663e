#!/usr/bin/env bash
# slmops prune (issue #17) on the fixture models: the sparsity of every pruned weight read back
# from the written file by check_sparsity.js (no slmops code), the output running in ONNX
# Runtime with the same perplexity/accuracy as our executor computes, and the quality ordering
# SparseGPT <= Wanda < magnitude at 50% unstructured and at 2:4 on both fixture LMs; then
# structured pruning (MLP neurons, Conv channels) on all three fixtures.
# Usage: prune_interop.sh SLMOPS_BINARY SOURCE_DIR NPZ_TO_PB_BINARY
set -u
S=$1
SRC=$2
NPZ_TO_PB=$3
F=$SRC/tests/fixtures
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-prune-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=../../cli/testlib.sh
. "$SRC/tests/cli/testlib.sh"  # check NAME COMMAND..., finish
json_ok() { node -e "process.exit(JSON.parse(process.argv[1]).ok ? 0 : 1)" "$1"; }
ppl() {
  "$S" -q evaluate "$1" --data "$F/lm_eval.npz" --json |
    node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).metrics.perplexity))"
}

for model in llama_bytes gpt_bytes; do
  "$NPZ_TO_PB" "$F/$model.onnx" "$F/lm_eval.npz" "$WORK/in-$model" > /dev/null  # all 64 rows, one batch
  declare -A P=()
  for spec in magnitude:0.5 wanda:0.5 sparsegpt:0.5 n:m:2:4 wanda:2:4 sparsegpt:2:4; do
    method=${spec%%:*}
    rest=${spec#*:}
    [ "$method" = n ] && method=n:m && rest=${rest#m:}
    args=()
    case $rest in
      *:*) args+=(--pattern "$rest") ;;
      *) args+=(--sparsity "$rest") ;;
    esac
    [ "$method" = wanda ] || [ "$method" = sparsegpt ] && args+=(--calib-data "$F/lm_calib.npz")
    out="$WORK/$model-${method/:/}-${rest/:/}.onnx"
    if ! "$S" -q prune "$F/$model.onnx" -o "$out" --method "$method" "${args[@]}" > /dev/null 2> "$WORK/err"; then
      check "$model $method $rest: prune ($(head -c 200 "$WORK/err"))" false
      continue
    fi
    flags=()
    [ "$method" != sparsegpt ] && flags+=(--unchanged)
    [ "$method" = magnitude ] && flags+=(--smallest)
    res=$(node "$HERE/check_sparsity.js" "$F/$model.onnx" "$out" "$rest" "${flags[@]}")
    check "$model $method $rest: every weight's sparsity as requested, read back from the file ($(node -e "const r=JSON.parse(process.argv[1]);console.log(r.tensors.length + ' tensors, ' + (r.problems[0] || 'sparsity ' + r.tensors.map(t=>t.sparsity.toFixed(3)).join(' ')).slice(0, 160))" "$res"))" \
      json_ok "$res"
    P[$method-$rest]=$(ppl "$out")
    # ONNX Runtime runs it: its perplexity over lm_eval.npz against our executor's.
    q=$(node "$SRC/tests/interop/float16_quality.js" lm "$F/$model.onnx" "$WORK/in-$model" "$out" "$WORK/in-$model" \
          --min-agreement 0 --max-ppl-change 1e9)
    ours=${P[$method-$rest]}
    check "$model $method $rest: runs in ONNX Runtime; its perplexity equals our executor's ($(node -e "const q=JSON.parse(process.argv[1]);console.log('ORT ' + q.ppl_low.toFixed(5) + ', slmops ' + Number(process.argv[2]).toFixed(5) + ', dense ' + q.ppl_fp32.toFixed(5))" "$q" "$ours"))" \
      node -e "const q=JSON.parse(process.argv[1]);process.exit(Math.abs(q.ppl_low / Number(process.argv[2]) - 1) < 1e-4 ? 0 : 1)" "$q" "$ours"
  done
  dense=$(ppl "$F/$model.onnx")
  echo "     $model perplexity: dense $dense; 50%: sparsegpt ${P[sparsegpt-0.5]}, wanda ${P[wanda-0.5]}, magnitude ${P[magnitude-0.5]}; 2:4: sparsegpt ${P[sparsegpt-2:4]}, wanda ${P[wanda-2:4]}, n:m ${P[n:m-2:4]}"
  check "$model 50%: perplexity sparsegpt <= wanda < magnitude" \
    node -e "process.exit(${P[sparsegpt-0.5]} <= ${P[wanda-0.5]} && ${P[wanda-0.5]} < ${P[magnitude-0.5]} ? 0 : 1)"
  check "$model 2:4: perplexity sparsegpt <= wanda < magnitude (n:m)" \
    node -e "process.exit(${P[sparsegpt-2:4]} <= ${P[wanda-2:4]} && ${P[wanda-2:4]} < ${P[n:m-2:4]} ? 0 : 1)"
  unset P
done

# The CNN (Conv and Gemm weights): magnitude 50% (per tensor and global) and 2:4 along the
# flattened Conv kernel; ONNX Runtime runs the result and top-1 accuracy is reported.
"$NPZ_TO_PB" "$F/cnn_digits.onnx" "$F/cnn_digits_test.npz" "$WORK/in-cnn" --samples 64 > /dev/null
for spec in magnitude:0.5 magnitude-global:0.5 n:m:2:4; do
  method=${spec%%:*}
  rest=${spec#*:}
  [ "$method" = n ] && method=n:m && rest=${rest#m:}
  args=()
  case $rest in *:*) args+=(--pattern "$rest") ;; *) args+=(--sparsity "$rest") ;; esac
  [ "$method" = magnitude-global ] && method=magnitude && args+=(--global)
  out="$WORK/cnn-$spec.onnx"
  if ! "$S" -q prune "$F/cnn_digits.onnx" -o "$out" --method "$method" "${args[@]}" --json > "$WORK/cnn.json" 2> "$WORK/err"; then
    check "cnn $spec: prune ($(head -c 200 "$WORK/err"))" false
    continue
  fi
  if [ "$spec" = magnitude-global:0.5 ]; then
    # One threshold over all weights: the total is 50%, each tensor's share differs.
    check "cnn $spec: 50% of all pruned weights are zero in the report" \
      node -e "const r=require('$WORK/cnn.json').steps[0].report;process.exit(Math.abs(r.zeros_after-0.5*r.pruned_parameters)<=1?0:1)"
  else
    res=$(node "$HERE/check_sparsity.js" "$F/cnn_digits.onnx" "$out" "$rest" --unchanged)
    check "cnn $spec: every weight's sparsity as requested, read back from the file" json_ok "$res"
  fi
  q=$(node "$SRC/tests/interop/float16_quality.js" cnn "$F/cnn_digits.onnx" "$WORK/in-cnn" "$out" "$WORK/in-cnn" --min-agreement 0)
  acc=$("$S" -q evaluate "$out" --data "$F/cnn_digits_test.npz" --json |
        node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).metrics.accuracy))")
  check "cnn $spec: runs in ONNX Runtime (top-1 agreement with the dense model $(node -e "console.log(JSON.parse(process.argv[1]).top1_agreement)" "$q")); slmops accuracy $acc" \
    node -e "process.exit(JSON.parse(process.argv[1]).samples > 0 ? 0 : 1)" "$q"
done

# Structured, with units ranked by weight norms, by activations, and by activations with the
# readers re-fitted (--compensate, the default with calibration data): 25% of the MLP neurons of both fixture LMs, 25% of gpt_bytes' attention heads
# (llama_bytes has grouped-query attention: its heads are not pruned) and 25% of the CNN's Conv
# channels removed. The float parameter count must drop by exactly what the shapes say, every shrunk
# weight must hold original values only (check_structured.js reads the files), ONNX Runtime
# must run the result, and our executor must compute what ORT computes on it.
#   llama_bytes: 2 layers x 48 of 192 neurons x (gate 64 + up 64 + down 64)         = 18432
#   gpt_bytes:   2 layers x 64 of 256 neurons x (fc1 64 + fc1 bias 1 + fc2 64)       = 16512
#   gpt_bytes heads: 2 layers x 1 of 4 heads x 16 dims x (q, k, v 64 + 1 bias each, proj 64) = 8288
#   cnn_digits:  conv0 4 of 16 channels x (9 + 1 bias) + conv1 inputs 4 x 32 x 9     =  1192
#                conv1 8 of 32 channels x (12 x 9 + 1 bias) + head 8 channels x 16 x 10 = 2152
agree() {  # MODEL INPUT_DIR: our executor's outputs against ORT's on the same inputs
  node "$SRC/tests/interop/run_ort.js" "$1" "$2" "$2" &&
    "$S" -q evaluate "$1" --data "$2" --check --scaled --rtol 1e-4 --atol 0 > /dev/null
}
for spec in llama_bytes:ffn:18432:lm_eval.npz:lm_calib.npz gpt_bytes:ffn:16512:lm_eval.npz:lm_calib.npz \
            gpt_bytes:heads:8288:lm_eval.npz:lm_calib.npz cnn_digits:channels:3344:cnn_digits_test.npz:cnn_digits_calib.npz; do
  IFS=: read -r model structures drop eval calib <<< "$spec"
  declare -A M=()
  for importance in weight activation refit; do
    out="$WORK/$model-structured-$structures-$importance.onnx"
    args=(--structures "$structures")
    refit=()
    case $importance in
      weight) args+=(--importance weight) ;;
      activation) args+=(--importance activation --calib-data "$F/$calib" --compensate false) ;;
      refit) args+=(--importance activation --calib-data "$F/$calib") && refit=(--refit) ;;
    esac
    if ! "$S" -q prune "$F/$model.onnx" -o "$out" --method structured --sparsity 0.25 "${args[@]}" > /dev/null \
         2> "$WORK/err"; then
      check "$model structured 25% $structures ($importance): prune ($(head -c 200 "$WORK/err"))" false
      continue
    fi
    res=$(node "$HERE/check_structured.js" "$F/$model.onnx" "$out" "$drop" "${refit[@]}")
    check "$model structured 25% $structures ($importance): parameters drop by $drop, shrunk weights $([ "$importance" = refit ] && echo "re-fitted" || echo "hold original values") ($(node -e "const r=JSON.parse(process.argv[1]);console.log(r.params_before + ' -> ' + r.params_after + ', ' + r.shrunk.length + ' weights shrunk' + (r.problems.length ? ': ' + r.problems[0] : ''))" "$res"))" \
      json_ok "$res"
    dir="$WORK/agree-$model-$structures-$importance"
    "$NPZ_TO_PB" "$out" "$F/$eval" "$dir" --samples 16 > /dev/null
    check "$model structured 25% $structures ($importance): runs in ONNX Runtime; our executor's outputs equal ORT's (1e-4 of max|ORT|)" \
      agree "$out" "$dir"
    metric=$([ "$model" = cnn_digits ] && echo accuracy || echo perplexity)
    m0=$("$S" -q evaluate "$F/$model.onnx" --data "$F/$eval" --json |
         node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).metrics.$metric))")
    m1=$("$S" -q evaluate "$out" --data "$F/$eval" --json |
         node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).metrics.$metric))")
    echo "     $model structured 25% $structures ($importance importance): $metric $m0 dense -> $m1"
    M[$importance]=$m1
  done
  if [ "$model" != cnn_digits ]; then  # the CNN's readers are Conv and Gemm: nothing to re-fit
    check "$model structured 25% $structures: re-fitting the readers (--compensate) lowers perplexity (${M[activation]} -> ${M[refit]})" \
      node -e "process.exit(${M[refit]} < ${M[activation]} ? 0 : 1)"
  fi
done

# Accuracy-aware: --max-degradation lowers the sparsity of the layers that add the most error
# (halved, then dense) until the goal holds. The written model's perplexity, measured again by
# evaluate, must meet the goal, and some sparsity must be left.
dense=$(ppl "$F/gpt_bytes.onnx")
for spec in magnitude:20% structured:30%; do
  method=${spec%%:*}
  goal=${spec#*:}
  out="$WORK/aa-$method.onnx"
  extra=()
  [ "$method" = structured ] && extra+=(--structures ffn)
  if ! "$S" -q prune "$F/gpt_bytes.onnx" -o "$out" --method "$method" --sparsity 0.5 --calib-data "$F/lm_calib.npz" "${extra[@]}" \
       --max-degradation "perplexity:$goal" --eval-data "$F/lm_eval.npz" --json > "$WORK/aa.json" 2> "$WORK/err"; then
    check "gpt_bytes accuracy-aware $method: prune ($(head -c 200 "$WORK/err"))" false
    continue
  fi
  after=$(ppl "$out")
  left=$(node -e "const r=require('$WORK/aa.json').steps[0].report;console.log(r.method==='structured'?r.units_removed:r.sparsity)")
  rounds=$(node -e "console.log(require('$WORK/aa.json').steps[0].report.accuracy_aware.steps.length)")
  check "gpt_bytes accuracy-aware $method 50% within perplexity +$goal: $rounds rounds, perplexity $dense -> $after, $left of the weights/units still removed" \
    node -e "const g=parseFloat('$goal')/100;process.exit($after <= $dense * (1 + g) && $left > 0 && $left < 0.5 ? 0 : 1)"
done

finish
