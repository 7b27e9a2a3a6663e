#!/usr/bin/env bash
# Differential test of slmops' quantization kernels with ONNX Runtime as the oracle: builds one
# small model per quantization op and variant (gen_quant_models.js), runs each in ONNX Runtime
# (run_ort.js) to get the expected outputs, then checks slmops' outputs against them with
# `slmops evaluate --check`: integer outputs must agree bit for bit, float outputs within the
# case's tolerance (rtol 1e-4 unless the case says otherwise).
# Usage: quant_interop.sh SLMOPS [THREADS]
set -u
S=$1
THREADS=${2:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
INTEROP=$(cd "$HERE/.." && pwd)
# QUANT_INTEROP_KEEP=DIR keeps the models and data in DIR (for debugging).
if [ -n "${QUANT_INTEROP_KEEP:-}" ]; then
  WORK=$QUANT_INTEROP_KEEP
  rm -rf "$WORK" && mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-quant-XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
fi
node "$INTEROP/check_ort.js" >/dev/null || { echo "ONNX Runtime is not installed (see tests/interop/README.md)"; exit 1; }
n=$(node "$HERE/gen_quant_models.js" "$WORK") || exit 1
pass=0
fail=0
for dir in "$WORK"/*/; do
  dir=${dir%/}
  name=$(basename "$dir")
  data="$dir/test_data_set_0"
  if ! err=$(node "$INTEROP/run_ort.js" "$dir/model.onnx" "$data" "$data" 2>&1); then
    echo "FAIL $name: ONNX Runtime: $err"
    fail=$((fail + 1))
    continue
  fi
  read -r rtol atol < "$dir/tolerance"
  if out=$("$S" --threads "$THREADS" -q evaluate "$dir/model.onnx" --data "$data" --check --rtol "$rtol" --atol "$atol" 2>&1); then
    echo "ok   $name"
    pass=$((pass + 1))
  else
    echo "FAIL $name: $out"
    fail=$((fail + 1))
  fi
done
echo "quant interop: $pass of $n cases agree with ONNX Runtime ($fail failed)"
[ "$fail" -eq 0 ] && [ "$pass" -eq "$n" ]
