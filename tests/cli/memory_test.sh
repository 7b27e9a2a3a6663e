#!/usr/bin/env bash
# Memory of a run: `slmops evaluate` reports peak RSS with its parts, and on a model large
# enough that the process's fixed ~10 MB do not dominate (a 96 MB synthetic decoder), peak
# RSS above the RSS before loading stays within 1.5x (weights + the largest live set of
# activations), at batch 1 and 8. (On the KB-sized fixtures the fixed part dominates.)
# Usage: memory_test.sh SLMOPS_BINARY MAKE_MODEL_BINARY
set -u
S=$1
MAKE=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-mem-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
source "$(dirname "$0")/testlib.sh"
"$MAKE" "$WORK/m.onnx" --mb 96 --external --seed 3 > /dev/null 2>&1 || { echo "FAIL setup: make_model"; exit 1; }
for shape in 1x128 8x128; do
  "$S" -q --threads 2 evaluate "$WORK/m.onnx" --random --shape input_ids=$shape --samples 2 --warmup 0 --json \
    > "$WORK/r.json" || { echo "FAIL evaluate $shape"; exit 1; }
  node -e "const m = require('$WORK/r.json').metrics; console.log('      $shape', JSON.stringify(m.memory), 'peak', m.peak_rss_bytes)"
  check "batch $shape: peak RSS - base <= 1.5 x (weights + peak activations)" \
    node -e "const m = require('$WORK/r.json').metrics.memory;
             process.exit(m.weight_bytes > 90e6 && m.peak_activation_bytes > 0 && m.rss_over_weights_and_activations > 0.5
                          && m.rss_over_weights_and_activations <= 1.5 ? 0 : 1)"
done
finish
