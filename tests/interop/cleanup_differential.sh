#!/usr/bin/env bash
# Differential test of `slmops convert` (the cleanup pass) with ONNX Runtime as the oracle:
# every libonnx-testdata model is cleaned, then the original and the cleaned model run in
# ONNX Runtime on the case's own inputs and must agree. Also shows that every model slmops
# wrote loads in ONNX Runtime wherever the original does.
# Also step 1 of optimize_interop.sh, with convert arguments and looser tolerances.
# Usage: cleanup_differential.sh SLMOPS [TESTDATA_DIR [CONVERT_ARG...]]
#   COMPARE_ARGS (environment): extra compare_batch.js arguments (--rtol R --atol A)
set -u
S=$1
DATA=${2:-/usr/share/libonnx-testdata/data}
shift $(($# < 2 ? $# : 2))
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-diff-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
node "$HERE/check_ort.js" >/dev/null || { echo "ONNX Runtime is not installed (see tests/interop/README.md)"; exit 1; }
i=0
failed_convert=0
: > "$WORK/list.tsv"
while IFS= read -r model; do
  dir=$(dirname "$model")
  [ -d "$dir/test_data_set_0" ] || continue
  i=$((i + 1))
  out="$WORK/m$i.onnx"
  if ! "$S" -q convert "$model" -o "$out" "$@" > /dev/null; then
    echo "FAIL convert $* $model"
    failed_convert=$((failed_convert + 1))
    continue
  fi
  printf '%s\t%s\t%s\n' "$out" "$model" "$dir/test_data_set_0" >> "$WORK/list.tsv"
done < <(find "$DATA" -name model.onnx | sort)
echo "converted $i models with convert $* ($failed_convert failed)"
# shellcheck disable=SC2086
node "$HERE/compare_batch.js" "$WORK/list.tsv" ${COMPARE_ARGS:-}
rc=$?
[ "$failed_convert" -eq 0 ] && [ "$rc" -eq 0 ]
