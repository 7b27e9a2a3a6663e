#!/usr/bin/env bash
# CLI contract: a recipe and the equivalent subcommand write byte-identical files, output is
# deterministic, results go to stdout and logs to stderr, --json is valid JSON with the
# documented keys, and a recipe with several problems reports each of them.
# Usage: cli_test.sh SLMOPS_BINARY SOURCE_DIR
set -u
S=$1
SRC=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-cli-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
source "$(dirname "$0")/testlib.sh"
json_get() {  # json_get FILE JS-EXPRESSION-ON-j
  node -e "const j = JSON.parse(require('fs').readFileSync('$1', 'utf8')); const v = ($2); if (v === undefined || v === false) process.exit(1); console.log(v)"
}

MODEL=$SRC/tests/fixtures/cnn_digits.onnx
RECIPE=$SRC/recipes/demo.json

check "--version prints a version on stdout" bash -c "'$S' --version | grep -q '^slmops [0-9]'"
check "--help exits 0" bash -c "'$S' --help >/dev/null"
check "convert --help lists the cleanup options" bash -c "'$S' convert --help | grep -q -- '--remove-identity'"

"$S" passes --json > "$WORK/passes.json"
check "passes --json lists cleanup with its six options" \
  json_get "$WORK/passes.json" "j.passes.find(p => p.name === 'cleanup').options.length === 6"
check "passes --json gives each option a type, default and help" \
  json_get "$WORK/passes.json" "j.passes[0].options.every(o => o.type && 'default' in o && o.help)"

# The recipe and the subcommand reach the same code: byte-identical output.
# (Same file name in different folders: the external-data location inside names the file.)
mkdir -p "$WORK/a" "$WORK/b" "$WORK/c"
"$S" -q run "$RECIPE" --set output="$WORK/a/m.onnx" > "$WORK/run.stdout" 2> "$WORK/run.stderr"
check "run exits 0" test $? -eq 0
check "run -q prints nothing on stderr" test ! -s "$WORK/run.stderr"
check "run prints the output path on stdout" grep -qx "$WORK/a/m.onnx" "$WORK/run.stdout"
"$S" -q convert "$MODEL" -o "$WORK/b/m.onnx" --external-data always --remove-dropout true --dedupe-initializers true > /dev/null
check "convert equals the one-step recipe (model)" cmp "$WORK/a/m.onnx" "$WORK/b/m.onnx"
check "convert equals the one-step recipe (data)" cmp "$WORK/a/m.onnx.data" "$WORK/b/m.onnx.data"
"$S" -q convert "$MODEL" -o "$WORK/c/m.onnx" --external-data always > /dev/null
check "output is deterministic (same input, same bytes)" cmp "$WORK/b/m.onnx" "$WORK/c/m.onnx"
check "... also its data file" cmp "$WORK/b/m.onnx.data" "$WORK/c/m.onnx.data"

"$S" -q run "$RECIPE" --set output="$WORK/r.onnx" --json > "$WORK/run.json"
check "run --json reports each step" json_get "$WORK/run.json" "j.steps[0].pass === 'cleanup' && j.model_bytes > 0"
check "run --dry-run validates without writing" \
  bash -c "'$S' -q run '$RECIPE' --set output='$WORK/dry.onnx' --dry-run && test ! -e '$WORK/dry.onnx'"

"$S" inspect "$MODEL" --json > "$WORK/inspect.json"
check "inspect --json: ir_version, opsets, inputs with symbolic dims" \
  json_get "$WORK/inspect.json" "j.ir_version > 0 && j.opsets['ai.onnx'] >= 13 && typeof j.inputs[0].shape[0] === 'string'"
check "inspect --json: op histogram and parameters" \
  json_get "$WORK/inspect.json" "j.op_types.Conv >= 1 && j.parameters > 1000 && j.largest_initializers.length > 0"
"$S" inspect "$WORK/a/m.onnx" --json > "$WORK/inspect_ext.json"
check "inspect --json lists external data files" \
  json_get "$WORK/inspect_ext.json" "j.external_data.length === 1 && j.external_data[0].bytes > 0"
check "inspect prints a table" bash -c "'$S' inspect '$MODEL' | grep -q '^parameters'"

cat > "$WORK/three.json" <<JSON
{"input": "$MODEL", "output": "$WORK/x.onnx", "steps": [
  {"pass": "cleanup", "options": {"remove-identity": 1, "bogus": true}}, {"pass": "nope"}]}
JSON
"$S" run "$WORK/three.json" 2> "$WORK/three.err"
rc=$?
check "a recipe with three problems exits 2" test "$rc" -eq 2
check "... and reports all three, one line each" test "$(grep -c '^slmops: error: ' "$WORK/three.err")" -eq 3
check "... and writes nothing" test ! -e "$WORK/x.onnx"

# --set into a step that has no "options" key: the options object is made, and the unknown
# option is named (it used to say "'x' is not an object").
echo "{\"input\": \"$MODEL\", \"output\": \"$WORK/s.onnx\", \"steps\": [{\"pass\": \"cleanup\"}]}" > "$WORK/noopts.json"
"$S" run "$WORK/noopts.json" --dry-run --set steps.0.options.remove-identity=false > /dev/null 2> "$WORK/noopts.err"
check "--set steps.0.options.KEY on a step without options sets it" test $? -eq 0
"$S" run "$WORK/noopts.json" --dry-run --set steps.0.options.no-such=1 > /dev/null 2> "$WORK/noopts2.err"
check "... and an unknown KEY is named as an unknown option" grep -q "no-such" "$WORK/noopts2.err"

finish
