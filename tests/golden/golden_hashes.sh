#!/usr/bin/env bash
# No-behaviour-change guard (issue "architecture step"): runs every fixture through every
# quantize mode and through convert (cleanup on/off, external data), plus the cleanup of a
# slice of libonnx-testdata, and prints one line per output file: "<case> <file> <sha256>".
#
#   golden_hashes.sh SLMOPS SOURCE_DIR            check against tests/golden/expected.txt
#   golden_hashes.sh SLMOPS SOURCE_DIR --write    rewrite tests/golden/expected.txt
#
# expected.txt was written by the tree before the refactoring; any difference means a change
# of behaviour, which must be deliberate (then rewrite it in the same commit and say why).
set -euo pipefail
slmops=$(realpath "$1") src=$(realpath "$2") mode=${3:-check}
expected=$src/tests/golden/expected.txt
# Outputs record the options they were made with (metadata slmops.recipe), data paths
# included: every path is given relative to the source folder, so the hashes do not depend
# on where the tree is checked out.
cd "$src"
fx=tests/fixtures
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$work/hashes.txt
: >"$out"

# run CASE ARGS...: runs slmops with ARGS writing $work/CASE/m.onnx, then hashes every file
# it wrote (the model and any external data; not reports, which hold timings), in name order.
# `run` (a recipe) names its own output.
run() {
  local name=$1
  shift
  mkdir -p "$work/$name"
  local out_flag=(-o "$work/$name/m.onnx")
  [[ $1 == run ]] && out_flag=()
  if ! "$slmops" -q --threads 2 "$@" "${out_flag[@]}" >/dev/null 2>"$work/$name.err"; then
    echo "FAIL $name: slmops $* exited non-zero: $(head -c 400 "$work/$name.err")" >&2
    echo "$name <error>" >>"$out"
    return 0
  fi
  # files in name order, those of a folder output (a package) by their path inside it
  (cd "$work/$name" && for f in $(find . -type f ! -name '*.md' | sed 's|^\./||' | LC_ALL=C sort); do
    echo "$name $f $(sha256sum "$f" | cut -d' ' -f1)"; done) >>"$out"
}

for m in cnn_digits gpt_bytes llama_bytes; do
  model=$fx/$m.onnx
  if [[ $m == cnn_digits ]]; then calib=$fx/cnn_digits_calib.npz; else calib=$fx/lm_calib.npz; fi
  run "$m.convert" convert "$model"
  run "$m.convert-nocleanup" convert --no-cleanup "$model"
  run "$m.convert-external" convert --external-data always "$model"
  run "$m.int8-dynamic" quantize --allow-noop --mode int8-dynamic "$model"
  run "$m.int8-dynamic-pc" quantize --allow-noop --mode int8-dynamic --per-channel true "$model"
  run "$m.int8-static" quantize --allow-noop --mode int8-static --calib-data "$calib" --calib-samples 16 "$model"
  run "$m.int8-static-entropy-sym" quantize --allow-noop --mode int8-static --calib-data "$calib" --calib-samples 16 \
    --calib-method entropy --symmetric-activations --per-channel true "$model"
  run "$m.int8-static-pct" quantize --allow-noop --mode int8-static --calib-data "$calib" --calib-samples 16 \
    --calib-method percentile "$model"
  run "$m.int16-static" quantize --allow-noop --mode int16-static --calib-data "$calib" --calib-samples 16 "$model"
  run "$m.int4-rtn" quantize --allow-noop --mode int4-weight "$model"
  run "$m.int4-rtn-sym-qdq" quantize --allow-noop --mode int4-weight --symmetric true --format qdq --block-size 16 "$model"
  run "$m.int4-hqq" quantize --allow-noop --mode int4-weight --algorithm hqq "$model"
  run "$m.int4-gptq" quantize --allow-noop --mode int4-weight --algorithm gptq --calib-data "$calib" \
    --calib-samples 8 "$model"
  run "$m.int4-gptq-actorder" quantize --allow-noop --mode int4-weight --algorithm gptq --gptq-act-order true \
    --calib-data "$calib" --calib-samples 8 "$model"
  run "$m.int8-weight" quantize --allow-noop --mode int8-weight --quantize-embeddings true --accuracy-level 4 "$model"
done
# Accuracy-aware quantize (the fallback loop) on the CNN.
run "cnn_digits.int8-static-aware" quantize --mode int8-static --calib-data "$fx/cnn_digits_calib.npz" \
  --calib-samples 16 --max-degradation accuracy:0.001 --eval-data "$fx/cnn_digits_test.npz" \
  --max-fallback-steps 3 "$fx/cnn_digits.onnx"
# Recipes run the same code as the subcommands.
# (In place, so that their relative paths resolve as a user's would; the output and any
# evaluation report go to the work folder.)
for r in recipes/*.json; do
  name=recipe.$(basename "$r" .json)
  mkdir -p "$work/$name"
  sets=(--set "output=$work/$name/$(basename "$(node -e "console.log(require('./$r').output)")")")
  for k in $(node -e "require('./$r').steps.forEach((s, i) => { if (s.options && s.options.report) console.log(i) })"); do
    sets+=(--set "steps.$k.options.report=$work/$name/report-$k.md")
  done
  run "$name" run "$r" "${sets[@]}"
done
# Cleanup over a fixed slice of libonnx-testdata (every 7th model, sorted).
td=/usr/share/libonnx-testdata/data  # system paths: the same on every machine
i=0
while read -r model; do
  i=$((i + 1))
  ((i % 7 == 0)) || continue
  rel=${model#$td/}
  run "td.${rel%/model.onnx}" convert "$model"
done < <(find "$td/node" "$td/pytorch-converted" "$td/pytorch-operator" "$td/simple" -name model.onnx | LC_ALL=C sort)

if [[ $mode == --write ]]; then
  cp "$out" "$expected"
  echo "wrote $(wc -l <"$expected") hashes to $expected"
  exit 0
fi
if diff -u "$expected" "$out" >"$work/diff"; then
  echo "golden hashes: $(wc -l <"$out") outputs identical to $expected"
  exit 0
fi
echo "golden hashes differ from $expected (- expected, + now):" >&2
head -80 "$work/diff" >&2
exit 1
