#!/usr/bin/env bash
# The CLI contract of issue #11. Every case asserts the exit code, that stderr is exactly
# one `slmops: error:` line matching a pattern (the option, file or node it names), and
# that nothing was written in the work folder (no output, no temporary file, inputs
# unchanged). Then a walk over every subcommand x every option it declares (read from
# `--help`) and every pass option (read from `slmops passes --json`), each given a value of
# the wrong type and one out of its declared range: exit 2, one line naming the option.
# Usage: contract_test.sh SLMOPS_BINARY SOURCE_DIR
set -u
S=$1
SRC=$(cd "$2" && pwd)
FX=$SRC/tests/fixtures
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-contract-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0

# Names of every file and folder, and the bytes of every file (not folder times: the output
# check may create and remove a probe file, which leaves nothing).
snapshot() {
  (cd "$WORK" && find . -print | sort && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) | sha256sum
}

# expect NAME CODE PATTERN CMD...: runs CMD in $WORK/case; exit CODE, one stderr line that
# starts with `slmops: error: ` and matches the extended regex PATTERN, nothing written.
expect() {
  local name=$1 code=$2 pattern=$3
  shift 3
  local before after err rc lines why=""
  before=$(snapshot)
  err=$(cd "$WORK/case" && "$@" 2>&1 >/dev/null)
  rc=$?
  after=$(snapshot)
  lines=$(printf '%s' "$err" | grep -c '')
  [ "$rc" -eq "$code" ] || why="exit code $rc, expected $code"
  [ -z "$why" ] && [ "$lines" -ne 1 ] && why="$lines lines on stderr, expected 1"
  [ -z "$why" ] && [[ "$err" != "slmops: error: "* ]] && why="stderr does not start with 'slmops: error: '"
  [ -z "$why" ] && ! printf '%s' "$err" | grep -Eq -- "$pattern" && why="stderr does not match /$pattern/"
  [ -z "$why" ] && [ "$before" != "$after" ] && why="files were written or changed in the work folder"
  if [ -n "$why" ]; then
    failed=$((failed + 1))
    echo "FAIL $name: $why"
    echo "     stderr: ${err:0:400}"
  else
    passed=$((passed + 1))
    [ -n "${QUIET_OK:-}" ] || echo "ok   $name: ${err:0:200}"
  fi
}
# ok NAME CMD...: a check that must hold (for the cases whose point is what IS written).
ok() { check "$@"; }

mkdir -p "$WORK/case"
cd "$WORK/case" || exit 1
cp "$FX/cnn_digits.onnx" cnn.onnx
mkdir -p ckpt && cp "$FX/cnn_digits.onnx" ckpt/model.onnx  # a checkpoint folder
cp "$FX/cnn_digits_test.npz" cnn.npz
cp "$FX/gpt_bytes.onnx" gpt.onnx
cp "$FX/lm_calib.npz" lm.npz
# A MatMul whose weight is not a float32 initializer (a graph input): nothing a weight-only
# mode can quantize, like a model whose weights are fp16.
cp /usr/share/libonnx-testdata/data/node/test_matmul_2d/model.onnx noweights.onnx 2>/dev/null ||
  cp "$FX/cnn_digits.onnx" noweights.onnx
recipe() { printf '%s\n' "$2" > "$1"; }
recipe typo_goal.json '{"input": "cnn.onnx", "output": "out/m.onnx", "steps": [
  {"pass": "quantize", "options": {"mode": "int8-dynamic", "op-types": ["Conv", "Gemm"]}},
  {"pass": "evaluate", "options": {"data": "cnn.npz", "goals": ["acc:max-degradation:0.01"]}}]}'
recipe bad_report.json '{"input": "cnn.onnx", "output": "out/m.onnx", "steps": [
  {"pass": "evaluate", "options": {"data": "cnn.npz", "report": "cnn.onnx/r.md"}}]}'
recipe no_calib.json '{"input": "cnn.onnx", "output": "out/m.onnx", "steps": [
  {"pass": "quantize", "options": {"mode": "int8-static", "calib-data": "missing.npz"}}]}'
recipe bad_block.json '{"input": "gpt.onnx", "output": "out/m.onnx", "steps": [
  {"pass": "quantize", "options": {"mode": "int4-weight", "block-size": 33}}]}'
recipe wrong_mode_opt.json '{"input": "gpt.onnx", "output": "out/m.onnx", "steps": [
  {"pass": "quantize", "options": {"mode": "int8-dynamic", "algorithm": "gptq"}}]}'
recipe empty_pass.json '{"input": "cnn.onnx", "output": "out/m.onnx", "steps": [{"pass": ""}]}'
printf '{"input": "cnn.onnx", "output": "out/m.onnx", "steps": [{"pass": %s}]}\n' \
  "$(head -c 10000 /dev/zero | tr '\0' '[')" > deep.json
recipe good.json '{"input": "cnn.onnx", "output": "out/m.onnx", "steps": [{"pass": "cleanup"}]}'
cd - >/dev/null || exit 1

# 1. Work done, then refused: everything checkable is checked first (also by --dry-run).
expect "1 evaluate: goal type typo, before the run" 2 "--goal 'accuracy:treshold:0.5'.*did you mean 'threshold'" \
  "$S" evaluate cnn.onnx --data cnn.npz --goal accuracy:treshold:0.5
expect "1 recipe --dry-run: unknown goal metric" 2 "typo_goal.json: step 2: .*no metric 'acc'.*did you mean 'accuracy'" \
  "$S" run typo_goal.json --dry-run
expect "1 recipe run: unknown goal metric, nothing quantized or written" 2 "no metric 'acc'" "$S" run typo_goal.json
expect "1 evaluate --report into a missing folder" 2 "--report nodir/r.md: folder 'nodir' does not exist" \
  "$S" evaluate cnn.onnx --data cnn.npz --report nodir/r.md
expect "1 recipe --dry-run: report folder cannot be created" 2 "bad_report.json: step 1: report .*cannot be created" \
  "$S" run bad_report.json --dry-run
expect "1 recipe --dry-run: calibration file missing" 2 "no_calib.json: step 1: option 'calib-data': .*missing.npz' does not exist" \
  "$S" run no_calib.json --dry-run
expect "1 quantize int8-static without calib-data" 2 "--mode int8-static needs --calib-data" \
  "$S" quantize cnn.onnx -o out.onnx --mode int8-static
expect "1 recipe --dry-run: block-size 33" 2 "bad_block.json: step 1: .*'block-size'.*power of two" \
  "$S" run bad_block.json --dry-run
expect "1 quantize --block-size 33" 2 "--block-size 33: must be a power of two" \
  "$S" quantize gpt.onnx -o out.onnx --mode int4-weight --block-size 33

# 2. Silent no-ops are errors; options the mode ignores are refused.
expect "2 quantize --op-types Matmul matches nothing" 2 "nothing to quantize: no node of op type Matmul.*--allow-noop" \
  "$S" quantize gpt.onnx -o out.onnx --mode int8-dynamic --op-types Matmul
expect "2 quantize int4-weight --op-types Conv on an LM" 2 "nothing to quantize: no node of op type Conv" \
  "$S" quantize gpt.onnx -o out.onnx --mode int4-weight --op-types Conv
expect "2 quantize weights that are not float32 initializers" 2 "nothing to quantize: no node was quantized.*skipped" \
  "$S" quantize noweights.onnx -o out.onnx --mode int4-weight
expect "2 int8-dynamic with --algorithm gptq" 2 "--algorithm gptq: does not apply here \(mode is \"int8-dynamic\"" \
  "$S" quantize gpt.onnx -o out.onnx --mode int8-dynamic --algorithm gptq --block-size 64
expect "2 int8-dynamic with --block-size (recipe form)" 2 "wrong_mode_opt.json: step 1: .*'algorithm'.*does not apply" \
  "$S" run wrong_mode_opt.json --dry-run
"$S" -q quantize "$WORK/case/gpt.onnx" -o "$WORK/noop.onnx" --mode int8-dynamic --op-types Matmul --allow-noop >/dev/null 2>&1
ok "2 --allow-noop writes the unchanged model" test -s "$WORK/noop.onnx"
rm -f "$WORK/noop.onnx"

# 3. Declared choices show in --help, `passes` and the error.
ok "3 quantize --help lists the modes" bash -c "'$S' quantize --help | grep -q -- '--mode {int8-dynamic|int8-static|int16-static|int4-weight|int8-weight}'"
ok "3 quantize --help lists algorithm, calib-method and format choices" bash -c \
  "'$S' quantize --help | grep -q -- '{rtn|gptq|hqq}' && '$S' quantize --help | grep -q 'minmax|entropy|percentile' && '$S' quantize --help | grep -q -- '{matmulnbits|qdq}'"
ok "3 passes lists the choices and ranges" bash -c "'$S' passes | grep -q 'one of rtn|gptq|hqq' && '$S' passes | grep -q 'int from 16 to 256'"
expect "3 a bad choice lists the choices" 2 "--mode 'int9-weight': expected one of: int8-dynamic, .*did you mean int[48]-weight" \
  "$S" quantize gpt.onnx -o out.onnx --mode int9-weight

# 4. Progress: one line per stage when stderr is not a terminal, nothing with -q.
"$S" quantize "$WORK/case/gpt.onnx" -o "$WORK/p.onnx" --mode int4-weight --algorithm gptq --calib-data "$WORK/case/lm.npz" \
  >/dev/null 2>"$WORK/progress.err"
ok "4 GPTQ logs the calibration stage with count and rate" grep -Eq '^slmops: calibration data: [0-9]+/[0-9]+ samples in .* samples/s$' "$WORK/progress.err"
ok "4 ... and the quantize stage" grep -Eq '^slmops: quantize int4-weight: [0-9]+ nodes in ' "$WORK/progress.err"
ok "4 ... and no terminal control characters in a log" bash -c "! grep -q $'\r' '$WORK/progress.err'"
"$S" -q evaluate "$WORK/case/cnn.onnx" --data "$WORK/case/cnn.npz" --batch-size 64 >/dev/null 2>"$WORK/q.err"
ok "4 -q: no progress lines" test ! -s "$WORK/q.err"
"$S" evaluate "$WORK/case/cnn.onnx" --data "$WORK/case/cnn.npz" --batch-size 64 >/dev/null 2>"$WORK/ev.err"
ok "4 evaluate logs one line for its stage" test "$(grep -c '^slmops: evaluate: 540/540 samples' "$WORK/ev.err")" -eq 1
rm -f "$WORK/p.onnx" "$WORK"/*.err

# 5. Leaks and ranges: one line, from the declared range.
expect "5 --random --samples 0" 2 "^slmops: error: --samples '0': must be from 1 to" \
  "$S" evaluate cnn.onnx --random --samples 0
expect "5 --threads 1000" 2 "--threads '1000': must be from 0 to [0-9]+" "$S" --threads 1000 evaluate cnn.onnx --random
expect "5 --threads -1" 2 "--threads '-1': must be from 0 to [0-9]+$" "$S" --threads -1 evaluate cnn.onnx --random
expect "5 --batch-size 0" 2 "--batch-size '0': must be from 1 to 65536" "$S" evaluate cnn.onnx --random --batch-size 0
expect "5 --batch-size -5" 2 "--batch-size '-5': must be from 1 to 65536" "$S" evaluate cnn.onnx --random --batch-size -5
expect "5 --batch-size 100000" 2 "--batch-size '100000': must be from 1 to 65536" "$S" evaluate cnn.onnx --random --batch-size 100000
expect "5 --batch-size 2^63-1" 2 "--batch-size '9223372036854775807': must be" \
  "$S" evaluate cnn.onnx --data cnn.npz --batch-size 9223372036854775807
expect "5 a huge --shard" 2 "--shard '0/9223372036854775807'" "$S" evaluate cnn.onnx --data cnn.npz --shard 0/9223372036854775807

# 6. --random measures latency, size and memory only; its shapes name inputs; not with --data.
"$S" -q evaluate "$WORK/case/gpt.onnx" --random --shape input_ids=4x63 --samples 8 --json >"$WORK/r.json"
ok "6 --random on an LM: no perplexity, samples count batch rows" node -e "
  const r = JSON.parse(require('fs').readFileSync('$WORK/r.json', 'utf8'));
  const m = r.metrics, t = m.throughput;
  if (m.perplexity !== undefined || m.nll !== undefined || m.accuracy !== undefined) process.exit(1);
  if (m.samples !== 8 || m.latency_ms.batches !== 2) process.exit(1);
  const expect = m.samples / (m.latency_ms.mean * m.latency_ms.batches / 1000);
  if (!(t.samples_per_s > 0.5 * expect && t.samples_per_s < 2 * expect)) process.exit(1);"
rm -f "$WORK/r.json"
expect "6 --random with a perplexity goal" 2 "--goal 'perplexity:threshold:5'.*latency, size and memory" \
  "$S" evaluate gpt.onnx --random --shape input_ids=1x16 --goal perplexity:threshold:5
expect "6 --shape naming a non-input" 2 "--shape image=1x1x28x28: the model has no input 'image' \(its inputs: input\)" \
  "$S" evaluate cnn.onnx --random --shape image=1x1x28x28
expect "6 --data with --random" 2 "--data cnn.npz and --random: choose one" "$S" evaluate cnn.onnx --data cnn.npz --random

# 7. Wording.
expect "7 subcommand typo" 2 "'quantise' is not a command; did you mean 'quantize'" "$S" quantise gpt.onnx -o out.onnx
expect "7 option typo" 2 "quantize: unknown option --mod; did you mean --mode\?" \
  "$S" quantize gpt.onnx -o out.onnx --mod int8-dynamic
expect "7 run on an ONNX model" 2 "cnn.onnx: this is an ONNX model, not a recipe" "$S" run cnn.onnx
expect "7 a baseline with other inputs" 2 "--baseline gpt.onnx: the baseline has no input 'input'" \
  "$S" evaluate cnn.onnx --data cnn.npz --baseline gpt.onnx

# 8. Reports: logical parameters, producer and recipe metadata, --dry-run --json plan.
"$S" -q quantize "$WORK/case/gpt.onnx" -o "$WORK/g4.onnx" --mode int4-weight >/dev/null
"$S" -q evaluate "$WORK/g4.onnx" --random --shape input_ids=1x16 --samples 1 --baseline "$WORK/case/gpt.onnx" --json >"$WORK/g4.json"
ok "8 int4 model: logical parameters equal the float model's, bytes by dtype apart" node -e "
  const r = JSON.parse(require('fs').readFileSync('$WORK/g4.json', 'utf8'));
  const m = r.metrics, b = r.baseline.metrics;
  if (m.parameters !== b.parameters || !(m.parameter_bytes.uint8 > 0) || !(m.parameter_bytes.float < b.parameter_bytes.float)) process.exit(1);"
"$S" inspect "$WORK/g4.onnx" --json >"$WORK/g4i.json"
ok "8 output producer is slmops and its version" node -e "
  const r = JSON.parse(require('fs').readFileSync('$WORK/g4i.json', 'utf8'));
  const v = require('child_process').execFileSync('$S', ['--version']).toString().trim().split(' ')[1];
  if (r.producer.name !== 'slmops' || r.producer.version !== v) process.exit(1);"
ok "8 metadata_props record the pass options" bash -c "grep -aq 'slmops.recipe' '$WORK/g4.onnx' && grep -aq '\"mode\":\"int4-weight\"' '$WORK/g4.onnx'"
rm -f "$WORK"/g4*
"$S" run "$WORK/case/good.json" --dry-run --json >"$WORK/plan.json"
ok "8 --dry-run --json prints the validated plan (defaults filled in), writes nothing" node -e "
  const r = JSON.parse(require('fs').readFileSync('$WORK/plan.json', 'utf8'));
  if (!r.valid || r.steps[0].pass !== 'cleanup' || r.steps[0].options['remove-identity'] !== true) process.exit(1);
  if (require('fs').existsSync('$WORK/case/out')) process.exit(1);"
rm -f "$WORK/plan.json"

# 9. --help says which accuracy level is fast on CPU.
ok "9 quantize --help names --accuracy-level 4 for speed on CPU" bash -c "'$S' quantize --help | grep -q 'for speed on CPU use 4'"

# Reliability: a pass named "" and a recipe nested 10,000 deep.
expect "run: a step whose pass is \"\"" 2 "empty_pass.json: step 1: unknown pass ''" "$S" run empty_pass.json
expect "run: JSON nested 10,000 deep" 2 "deep.json: JSON nested more than 64 levels deep" "$S" run deep.json

# The walk: every subcommand x every option that takes a typed value, read from --help.
# `opts CMD`: lines "NAME TYPE MIN MAX" (MIN/MAX empty when the help states no range).
opts() {
  "$S" $1 --help | node -e '
    const lines = require("fs").readFileSync(0, "utf8").split("\n");
    for (let i = 0; i < lines.length; ++i) {
      const m = lines[i].match(/^\s+(?:-\w,)?--([a-z0-9-]+) (INT|FLOAT|\[BOOL\]|\{[^}]*\}|LIST of \S+)\s*(.*)$/);
      if (!m) continue;
      let text = m[3] || lines[i + 1] || "";
      const r = text.match(/(?:from|in [\[(])\s*(-?[0-9.e+]+),?\s+(?:to\s+)?(-?[0-9.e+]+)/);
      const lo = text.match(/at least (-?[0-9.e+]+)/);
      const type = m[2].startsWith("{") ? "CHOICE" : m[2].startsWith("LIST") ? "LIST" : m[2].replace(/[\[\]]/g, "");
      console.log([m[1], type, r ? r[1] : (lo ? lo[1] : ""), r ? r[2] : ""].join(" "));
    }'
}
walk() {  # walk LABEL "ARGS BEFORE" "ARGS AFTER" (the option goes between)
  local label=$1 pre=$2 post=$3 name type min max bad
  while read -r name type min max; do
    [ -n "$name" ] || continue
    case $type in
      INT) bad=("twelve" "1.5") ;;
      FLOAT) bad=("abc" "nan") ;;
      BOOL) bad=("maybe") ;;
      CHOICE|LIST) bad=("no-such-choice") ;;
    esac
    if [ "$type" = INT ] || [ "$type" = FLOAT ]; then
      [ -n "$max" ] && bad+=("$(node -e "console.log($type === 'INT' ? BigInt('${max%%.*}') + 1n : $max * 2 + 1)" 2>/dev/null || echo 1e300)")
      [ -n "$min" ] && bad+=("$(node -e "console.log($min - 1)")")
      [ -z "$min$max" ] && { echo "FAIL $label --$name: --help declares no range"; failed=$((failed + 1)); }
    fi
    local rest=$post
    [ "$name" = mode ] && rest=${post/--mode int4-weight/}
    for v in "${bad[@]}"; do
      # shellcheck disable=SC2086
      QUIET_OK=1 expect "walk: $label --$name $v" 2 "--$name" "$S" $pre --$name "$v" $rest
    done
  done < <(opts "$4")
}
before=$passed
walk "slmops" "" "inspect cnn.onnx" ""
walk "inspect" "inspect cnn.onnx" "" inspect
walk "convert" "convert cnn.onnx -o out.onnx" "" convert
walk "quantize" "quantize gpt.onnx -o out.onnx" "--mode int4-weight" quantize
walk "evaluate" "evaluate cnn.onnx --data cnn.npz" "" evaluate
walk "run" "run good.json --dry-run" "" run
walk "passes" "passes" "" passes
echo "ok   walk over subcommand options: $((passed - before)) cases"

# The same for recipes: every option of every pass (slmops passes --json) with a value of the
# wrong type and one outside its range, through run --dry-run.
"$S" passes --json | node -e '
  const fs = require("fs"), dir = process.argv[1];
  const j = JSON.parse(fs.readFileSync(0, "utf8"));
  let n = 0;
  for (const p of j.passes) {
    for (const o of p.options) {
      const bad = [];
      if (o.type === "int") { bad.push("x", 1.5); if ("max" in o) bad.push(o.max + 1); if ("min" in o) bad.push(o.min - 1); }
      if (o.type === "float") { bad.push("x"); if ("max" in o) bad.push(o.max + 1); if ("min" in o) bad.push(o.min - 1); }
      if (o.type === "bool") bad.push("yes");
      if (o.type === "string") bad.push(o.choices ? "no-such-choice" : 5);
      if (o.type === "string list") bad.push(o.choices ? ["no-such-choice"] : "x");
      for (const v of bad) {
        const options = {[o.name]: v};
        if (p.name === "evaluate" && o.name !== "data") options.data = "cnn.npz";
        if (p.name === "quantize" && o.name !== "mode") options.mode = "int4-weight";
        // A step gets the kind of artifact it takes: a folder for a checkpoint step.
        const input = p.takes === "checkpoint" || p.takes === "package" ? "ckpt" : "cnn.onnx";
        const output = p.returns === "onnx-model" ? "out/m.onnx" : "out/folder";
        const r = {input, output, steps: [{pass: p.name, options}]};
        fs.writeFileSync(`${dir}/walk_${n++}.json`, JSON.stringify(r));
        console.log(`walk_${n - 1}.json ${p.name} ${o.name} ${JSON.stringify(v)}`);
      }
    }
  }' "$WORK/case" >"$WORK/walk.list"
before=$passed
while read -r file pass name value; do
  QUIET_OK=1 expect "recipe walk: $pass $name $value" 2 "$file: step 1: .*'$name'" "$S" run "$file" --dry-run
done <"$WORK/walk.list"
echo "ok   walk over recipe pass options: $((passed - before)) cases"
[ "$((passed - before))" -gt 60 ] || { echo "FAIL the recipe walk covered too few options"; failed=$((failed + 1)); }

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
