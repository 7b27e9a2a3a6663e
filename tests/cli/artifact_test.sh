#!/usr/bin/env bash
# Recipe steps over artifacts: a recipe that starts from a folder (from-folder: checkpoint ->
# onnx-model) and one that ends in a folder (package: onnx-model -> package) validate and run;
# the packaged model runs in ONNX Runtime and agrees with slmops; a folder output is replaced
# whole; chains whose kinds do not fit are refused before any work, naming the step.
# Usage: artifact_test.sh SLMOPS NPZ_TO_PB SOURCE_DIR
set -u
S=$1
NPZ_TO_PB=$2
SRC=$3
FX=$SRC/tests/fixtures
W=$(mktemp -d "${TMPDIR:-/tmp}/slmops-artifact-XXXXXX")
trap 'rm -rf "$W"' EXIT
source "$(dirname "$0")/testlib.sh"
json_get() {  # json_get FILE JS-EXPRESSION-ON-j
  node -e "const j = JSON.parse(require('fs').readFileSync('$1', 'utf8')); const v = ($2); if (v === undefined || v === false) process.exit(1); console.log(v)"
}

# ---- a folder in -----------------------------------------------------------------------------
mkdir -p "$W/ckpt"
cp "$FX/cnn_digits.onnx" "$W/ckpt/model.onnx"
cat > "$W/in.json" <<JSON
{"input": "ckpt", "output": "out/cnn.onnx",
 "steps": [{"pass": "from-folder"}, {"pass": "cleanup"},
           {"pass": "evaluate", "options": {"data": "$FX/cnn_digits_test.npz", "baseline": "$FX/cnn_digits.onnx",
                                            "goals": ["top1_agreement:threshold:1.0"]}}]}
JSON
"$S" -q run "$W/in.json" --dry-run --json > "$W/in.plan.json"
check "folder in: --dry-run validates" test $? -eq 0
check "folder in: the plan says the input is a checkpoint" json_get "$W/in.plan.json" "j.input_kind === 'checkpoint'"
check "folder in: the plan says the output is an onnx-model" json_get "$W/in.plan.json" "j.output_kind === 'onnx-model'"
"$S" -q run "$W/in.json" --json > "$W/in.report.json"
check "folder in: run exits 0 and meets top-1 agreement 1.0 with the source model" test $? -eq 0
check "folder in: the output model is written" test -s "$W/out/cnn.onnx"
"$S" -q convert "$FX/cnn_digits.onnx" -o "$W/direct.onnx"
"$S" inspect --json "$W/out/cnn.onnx" > "$W/a.json"
"$S" inspect --json "$W/direct.onnx" > "$W/b.json"
check "folder in: same graph as converting the file directly (nodes, parameters)" \
  node -e "const a=require('$W/a.json'), b=require('$W/b.json'); process.exit(a.nodes===b.nodes && a.parameters===b.parameters ? 0 : 1)"

# ---- a folder out ----------------------------------------------------------------------------
cat > "$W/out.json" <<JSON
{"input": "$FX/cnn_digits.onnx", "output": "pkg",
 "steps": [{"pass": "cleanup"}, {"pass": "package", "options": {"external-data": "always"}}]}
JSON
"$S" -q run "$W/out.json" --dry-run --json > "$W/out.plan.json"
check "folder out: --dry-run validates" test $? -eq 0
check "folder out: the plan says the output is a package" json_get "$W/out.plan.json" "j.output_kind === 'package'"
"$S" -q run "$W/out.json" > /dev/null
check "folder out: run exits 0" test $? -eq 0
check "folder out: the package holds model.onnx, its data and manifest.json" \
  test -s "$W/pkg/model.onnx" -a -s "$W/pkg/model.onnx.data" -a -s "$W/pkg/manifest.json"
check "folder out: the manifest lists the files with their sizes" \
  json_get "$W/pkg/manifest.json" "j.files.length === 2 && j.files[0].path === 'model.onnx' && j.files[0].bytes === require('fs').statSync('$W/pkg/model.onnx').size && j.files[1].bytes === require('fs').statSync('$W/pkg/model.onnx.data').size && j.inputs[0] === 'input'"
check "folder out: no staging folder is left beside it" bash -c "! ls -a '$W' | grep -q 'pkg.tmp-'"
"$S" inspect --json "$W/pkg/model.onnx" > "$W/pkg.inspect.json"
check "folder out: the packaged model names slmops as producer" json_get "$W/pkg.inspect.json" "j.producer.name === 'slmops'"
check "folder out: the packaged model holds the recipe (metadata slmops.recipe)" \
  bash -c "grep -q 'slmops.recipe' '$W/pkg/model.onnx' && grep -q '\"pass\":\"package\"' '$W/pkg/model.onnx'"
mkdir -p "$W/ort"
if "$NPZ_TO_PB" "$FX/cnn_digits.onnx" "$FX/cnn_digits_test.npz" "$W/ort" --samples 8 &&
  node "$SRC/tests/interop/run_ort.js" "$W/pkg/model.onnx" "$W/ort" "$W/ort"; then
  check "folder out: ONNX Runtime runs the packaged model and slmops agrees with it" \
    "$S" -q evaluate "$W/pkg/model.onnx" --data "$W/ort" --check --scaled --rtol 1e-4 --atol 0
else
  check "folder out: ONNX Runtime runs the packaged model" false
fi
# Run again over the existing folder: it is replaced whole (a stray file goes with the old one).
touch "$W/pkg/stray.txt"
"$S" -q run "$W/out.json" > /dev/null
check "folder out: a second run replaces the folder whole" test ! -e "$W/pkg/stray.txt" -a -s "$W/pkg/model.onnx"

# ---- chains that do not fit ------------------------------------------------------------------
refused() {  # refused RECIPE-JSON EXPECTED-TEXT: exit 2, one message naming it, nothing written
  echo "$1" > "$W/bad.json"
  rm -rf "$W/badout"
  "$S" run "$W/bad.json" > /dev/null 2> "$W/bad.err"
  local rc=$?
  [ $rc -eq 2 ] && grep -q -- "$2" "$W/bad.err" && [ ! -e "$W/badout" ] || { cat "$W/bad.err"; return 1; }
}
check "a model pass after package is refused, naming the step" \
  refused "{\"input\": \"$FX/cnn_digits.onnx\", \"output\": \"badout\", \"steps\": [{\"pass\": \"package\"}, {\"pass\": \"cleanup\"}]}" \
  "step 2: 'cleanup' takes a onnx-model, but gets a package from step 1 ('package')"
check "a model pass on a folder input is refused" \
  refused "{\"input\": \"ckpt\", \"output\": \"badout\", \"steps\": [{\"pass\": \"cleanup\"}]}" \
  "step 1: 'cleanup' takes a onnx-model, but gets a checkpoint from the input"
check "evaluate after package is refused" \
  refused "{\"input\": \"$FX/cnn_digits.onnx\", \"output\": \"badout\", \"steps\": [{\"pass\": \"package\"}, {\"pass\": \"evaluate\", \"options\": {\"data\": \"$FX/cnn_digits_test.npz\"}}]}" \
  "evaluate measures an ONNX model, but the recipe's output is a package"
check "from-folder on a model file is refused" \
  refused "{\"input\": \"$FX/cnn_digits.onnx\", \"output\": \"badout\", \"steps\": [{\"pass\": \"from-folder\"}]}" \
  "'from-folder' takes a checkpoint, but gets a onnx-model from the input"
check "from-folder with a path out of the folder is refused" \
  refused "{\"input\": \"ckpt\", \"output\": \"badout.onnx\", \"steps\": [{\"pass\": \"from-folder\", \"options\": {\"model\": \"../x.onnx\"}}]}" \
  "must be a path inside the folder"
echo keep > "$W/file-out"
echo "{\"input\": \"$FX/cnn_digits.onnx\", \"output\": \"file-out\", \"steps\": [{\"pass\": \"package\"}]}" > "$W/bad.json"
"$S" run "$W/bad.json" > /dev/null 2> "$W/bad.err"
check "a folder output over an existing file: exit 2, the file untouched" \
  bash -c "[ $? -eq 2 ] && grep -q 'output is a file' '$W/bad.err' && [ \"\$(cat '$W/file-out')\" = keep ]"

"$S" passes --json > "$W/passes.json"
check "passes --json gives each step the kinds it takes and returns" \
  json_get "$W/passes.json" "j.passes.find(p => p.name === 'package').returns === 'package' && j.passes.find(p => p.name === 'cleanup').takes === 'onnx-model'"
finish
