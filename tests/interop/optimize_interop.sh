#!/usr/bin/env bash
# `slmops convert --optimize` against ONNX Runtime (#12):
#  1. every libonnx-testdata model that ORT runs: the optimized model runs in ORT and agrees
#     with the original (rtol 1e-4, atol 1e-5), one ORT process for all;
#  2. node counts: the fixtures and every pytorch-converted / pytorch-operator model have no
#     more nodes after `convert --optimize` than ORT's own basic-level graph of the same
#     model (onnxruntime-node saves it: graphOptimizationLevel 'basic'); both counts printed;
#  3. the fixtures, optimized with --target onnx and --target onnxruntime, agree with the
#     originals in ORT on real inputs.
# Usage: optimize_interop.sh SLMOPS NPZ_TO_PB SOURCE_DIR [TESTDATA_DIR]
set -u
S=$1
NPZ_TO_PB=$2
SRC=$3
DATA=${4:-/usr/share/libonnx-testdata/data}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-opt-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
node "$HERE/check_ort.js" >/dev/null || { echo "ONNX Runtime is not installed (see tests/interop/README.md)"; exit 1; }
failed=0

# 1. Differential over the conformance data.
COMPARE_ARGS="--rtol 1e-4 --atol 1e-5" bash "$HERE/cleanup_differential.sh" "$S" "$DATA" --optimize ||
  failed=$((failed + 1))

# 2. Node counts against ORT's basic level.
nodes() { "$S" inspect "$1" --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).nodes))'; }
models=("$SRC/tests/fixtures/cnn_digits.onnx" "$SRC/tests/fixtures/gpt_bytes.onnx" "$SRC/tests/fixtures/llama_bytes.onnx")
while IFS= read -r m; do models+=("$m"); done < <(find "$DATA/pytorch-converted" "$DATA/pytorch-operator" -name model.onnx | sort)
pairs=()
for k in "${!models[@]}"; do pairs+=("${models[$k]}" "$WORK/ort$k.onnx"); done
node "$HERE/ort_optimize.js" basic "${pairs[@]}" || echo "(models ORT cannot load are skipped)"
compared=0
for k in "${!models[@]}"; do
  m=${models[$k]}
  [ -f "$WORK/ort$k.onnx" ] || continue
  "$S" -q convert "$m" -o "$WORK/ours$k.onnx" --optimize > /dev/null || { echo "FAIL convert --optimize $m"; failed=$((failed + 1)); continue; }
  before=$(nodes "$m") ours=$(nodes "$WORK/ours$k.onnx") ort=$(nodes "$WORK/ort$k.onnx")
  name=${m#"$DATA/"}
  name=${name#"$SRC/"}
  if [ "$ours" -le "$ort" ]; then
    echo "ok   nodes $name: exported $before, slmops $ours, ORT basic $ort"
  else
    echo "FAIL nodes $name: exported $before, slmops $ours, ORT basic $ort"
    failed=$((failed + 1))
  fi
  compared=$((compared + 1))
done
echo "node counts compared on $compared models"
[ "$compared" -ge 23 ] || { echo "FAIL only $compared models compared (want the 3 fixtures and >= 20 pytorch models)"; failed=$((failed + 1)); }

# 3. Fixtures on real inputs, both targets.
for spec in cnn_digits:cnn_digits_test.npz gpt_bytes:lm_eval.npz llama_bytes:lm_eval.npz; do
  name=${spec%%:*}
  dir="$WORK/in-$name"
  "$NPZ_TO_PB" "$SRC/tests/fixtures/$name.onnx" "$SRC/tests/fixtures/${spec#*:}" "$dir" --samples 8 > /dev/null || { failed=$((failed + 1)); continue; }
  for target in onnx onnxruntime; do
    out="$WORK/$name-$target.onnx"
    if "$S" -q convert "$SRC/tests/fixtures/$name.onnx" -o "$out" --optimize --target $target > /dev/null &&
       node "$HERE/compare_models.js" "$out" "$SRC/tests/fixtures/$name.onnx" "$dir" --rtol 1e-4 --atol 1e-4; then
      echo "ok   $name --target $target: $(nodes "$out") nodes, agrees with the original in ORT"
    else
      echo "FAIL $name --target $target"
      failed=$((failed + 1))
    fi
  done
done
echo "optimize interop: $failed failure(s)"
[ "$failed" -eq 0 ]
