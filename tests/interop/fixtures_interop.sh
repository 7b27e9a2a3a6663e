#!/usr/bin/env bash
# The fixture models run in slmops and in ONNX Runtime on the same inputs and agree: ORT's
# outputs are written as output_K.pb and `slmops evaluate --check` compares its own with
# them: |slmops - ORT| <= 1e-4 * max|ORT| per output (relative to the output's scale; an
# element-wise relative bar fails on near-zero logits from rounding alone). Batch 1 and 16.
# Usage: fixtures_interop.sh SLMOPS NPZ_TO_PB SOURCE_DIR
set -u
S=$1
NPZ_TO_PB=$2
SRC=$3
HERE=$(cd "$(dirname "$0")" && pwd)
FX=$SRC/tests/fixtures
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-fx-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0
for spec in cnn_digits:cnn_digits_test.npz gpt_bytes:lm_eval.npz llama_bytes:lm_eval.npz; do
  model=${spec%%:*}
  data=${spec#*:}
  for n in 1 16; do
    dir="$WORK/$model-$n"
    "$NPZ_TO_PB" "$FX/$model.onnx" "$FX/$data" "$dir" --samples $n &&
      node "$HERE/run_ort.js" "$FX/$model.onnx" "$dir" "$dir" &&
      "$S" -q evaluate "$FX/$model.onnx" --data "$dir" --check --scaled --rtol 1e-4 --atol 0
    if [ $? -eq 0 ]; then
      passed=$((passed + 1))
      echo "ok   $model batch $n: slmops agrees with ONNX Runtime (1e-4 of max|ORT|)"
    else
      failed=$((failed + 1))
      echo "FAIL $model batch $n"
    fi
  done
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
