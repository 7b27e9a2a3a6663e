#!/usr/bin/env bash
# slmops distill-data with a local teacher (issue #16): the trained byte-level Llama fixture,
# converted at test time. Greedy answers equal `slmops generate`; a run killed with SIGKILL and
# run again ends with exactly the rows of an uninterrupted run, byte for byte (sampling, seeded);
# shards merged equal the unsharded output; stop strings, --n, changed settings, bad rows.
# Usage: distill_local.sh SLMOPS_BINARY SOURCE_DIR
set -u
S=$1
SRC=$2
HF=$SRC/tests/fixtures/hf/llama_trained
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-distill-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=../../cli/testlib.sh
. "$SRC/tests/cli/testlib.sh"  # check NAME COMMAND..., finish
cd "$WORK" || exit 1
js() { node -e "$1" -- "${@:2}"; }

"$S" -q convert "$HF" -o T --package genai > /dev/null || { echo "FAIL convert"; exit 1; }

# Prompt texts: lines of the fixture's held-out text.
node -e '
const fs = require("fs");
const texts = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(l => JSON.parse(l).text.trim()).filter(t => t.length > 4);
const small = [], big = [];
for (let i = 0; i < 6; ++i)
  small.push(i < 4 ? {id: i, prompt: texts[i]} : {id: i, messages: [{role: "user", content: texts[i]}]});
for (let i = 0; i < 96; ++i) {
  const t = texts[(i * 7) % texts.length];
  big.push(i % 3 == 0 ? {id: i, tag: "x" + i, messages: [{role: "system", content: "Answer briefly."}, {role: "user", content: t}]}
                      : {id: i, prompt: t});
}
fs.writeFileSync("small.jsonl", small.map(r => JSON.stringify(r)).join("\n") + "\n");
fs.writeFileSync("big.jsonl", big.map(r => JSON.stringify(r)).join("\n") + "\n");
' "$HF/eval_text.jsonl"

# 1. Greedy rows equal `slmops generate` (ids and text); chosen log-probabilities head the top list.
"$S" -q distill-data --teacher T --prompts small.jsonl -o small.out.jsonl --max-tokens 32 --logprobs 3 --json > s.json
check "small: exit 0, 6 rows" js 'process.exit(require("fs").readFileSync("small.out.jsonl","utf8").trim().split("\n").length == 6 ? 0 : 1)'
for i in 0 1 2 3 4 5; do
  row=$(sed -n "$((i + 1))p" small.out.jsonl)
  text=$(js 'const r = JSON.parse(process.argv[1]); console.log(r.prompt ?? r.messages[0].content)' "$row")
  chat=()
  [ "$i" -ge 4 ] && chat=(--chat)
  "$S" -q generate T --prompt "$text" "${chat[@]}" --max-new-tokens 32 --json > g$i.json
  check "row $i: ids and text equal slmops generate${chat:+ --chat}" js '
    const fs = require("fs");
    const r = JSON.parse(process.argv[1]), g = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
    const ids = r.teacher.logprobs.ids, text = r.completion ?? r.messages.at(-1).content;
    const same = JSON.stringify(ids) == JSON.stringify(g.generated_ids) && text == g.text;
    if (!same) console.error(JSON.stringify(ids), JSON.stringify(g.generated_ids), JSON.stringify(text), JSON.stringify(g.text));
    const lp = r.teacher.logprobs;
    const heads = lp.chosen.every((v, t) => lp.top_ids[t][0] == ids[t] && lp.top_values[t][0] == v && lp.top_ids[t].length == 3);
    process.exit(same && heads && r.id == +process.argv[3] ? 0 : 1)' "$row" g$i.json "$i"
done
check "messages rows: the assistant turn appended, prompt rows: completion, teacher metadata" js '
  const rows = require("fs").readFileSync("small.out.jsonl","utf8").trim().split("\n").map(JSON.parse);
  const ok = rows.every((r, i) => r.teacher.index == i && r.teacher.sample == 0 && r.teacher.model == "T" &&
    r.teacher.settings.max_tokens == 32 && /^[0-9a-f]{32}$/.test(r.teacher.key) &&
    ["stop","length"].includes(r.teacher.finish_reason) && r.teacher.prompt_tokens > 0 &&
    r.teacher.completion_tokens == r.teacher.logprobs.ids.length &&
    (i < 4 ? typeof r.completion == "string" && !r.messages
           : r.messages.length == 2 && r.messages[1].role == "assistant" && r.completion === undefined));
  process.exit(ok ? 0 : 1)'

# 2. SIGKILL in the middle of a sampled run, then the same command: the uninterrupted run's bytes.
big=(-q --threads 1 distill-data --teacher T --prompts big.jsonl --max-tokens 48 --batch-size 4 --temperature 0.9
     --top-k 40)
run_big() { "$S" "${big[@]}" --seed "$@"; }  # SEED ARGS...
run_big 5 -o ref.jsonl > /dev/null
check "uninterrupted: 96 rows, no journal left" js '
  const fs = require("fs");
  process.exit(fs.readFileSync("ref.jsonl","utf8").trim().split("\n").length == 96 && !fs.existsSync("ref.jsonl.journal") ? 0 : 1)'
"$S" "${big[@]}" --seed 5 -o out.jsonl > /dev/null 2>&1 &  # $! is slmops itself
pid=$!
for _ in $(seq 1 400); do
  [ -f out.jsonl.journal ] && [ "$(wc -l < out.jsonl.journal)" -ge 12 ] && break
  sleep 0.02
done
kill -9 "$pid" 2> /dev/null
wait "$pid" 2> /dev/null
killed_rows=$(wc -l < out.jsonl.journal)
echo "     killed after $killed_rows journal rows"
check "killed: rows in the journal, fewer than all, no output yet" \
  js "process.exit($killed_rows >= 12 && $killed_rows < 96 && !require('fs').existsSync('out.jsonl') ? 0 : 1)"
printf '{"id": 7, "prompt": "a torn li' >> out.jsonl.journal  # what a kill inside a write leaves
run_big 5 -o out.jsonl --json > resume.json
check "resumed: byte-identical to the uninterrupted run" cmp -s out.jsonl ref.jsonl
check "resumed: skipped the journal's rows, wrote the rest, journal removed" js '
  const s = JSON.parse(require("fs").readFileSync("resume.json","utf8"));
  process.exit(s.rows_skipped == +process.argv[1] && s.rows_written == 96 - s.rows_skipped &&
               !require("fs").existsSync("out.jsonl.journal") ? 0 : 1)' "$killed_rows"
run_big 5 -o out.jsonl --json > again.json
check "a finished run again: nothing to do, same bytes" js '
  const s = JSON.parse(require("fs").readFileSync("again.json","utf8"));
  process.exit(s.rows_written == 0 && s.rows_skipped == 96 ? 0 : 1)'
check "a finished run again: output unchanged" cmp -s out.jsonl ref.jsonl
run_big 6 -o seed6.jsonl > /dev/null
check "another seed: other answers" js '
  const fs = require("fs");
  const a = fs.readFileSync("ref.jsonl","utf8").trim().split("\n").map(JSON.parse);
  const b = fs.readFileSync("seed6.jsonl","utf8").trim().split("\n").map(JSON.parse);
  const differ = a.filter((r, i) => JSON.stringify(r.teacher.key) != JSON.stringify(b[i].teacher.key) &&
                                     (r.completion ?? r.messages.at(-1).content) != (b[i].completion ?? b[i].messages.at(-1).content)).length;
  process.exit(differ > 80 ? 0 : 1)'

# 3. Shards 0..2 of 3, merged, equal the unsharded output.
for i in 0 1 2; do run_big 5 --shard $i/3 -o shard$i.jsonl > /dev/null; done
"$S" -q distill-data --merge shard2.jsonl shard0.jsonl shard1.jsonl -o merged.jsonl
check "shards 0..2 of 3 merged equal the unsharded output" cmp -s merged.jsonl ref.jsonl
check "shards are whole batches of 4 rows" js '
  const fs = require("fs");
  const n = [0,1,2].map(i => fs.readFileSync(`shard${i}.jsonl`,"utf8").trim().split("\n").length);
  process.exit(n.every(k => k % 4 == 0) && n.reduce((a, b) => a + b) == 96 ? 0 : 1)'
"$S" -q distill-data --merge shard0.jsonl shard0.jsonl -o dup.jsonl 2> dup.err
check "merge: a row in two shards -> exit 2, named" [ $? -eq 2 ]
check "merge: nothing written on error" [ ! -e dup.jsonl ]

# 4. --n, stop strings, changed settings.
"$S" -q distill-data --teacher T --prompts small.jsonl -o n2.jsonl --max-tokens 16 --temperature 1.0 --seed 1 --n 2
check "--n 2: two rows per prompt, samples 0 and 1, in order" js '
  const rows = require("fs").readFileSync("n2.jsonl","utf8").trim().split("\n").map(JSON.parse);
  process.exit(rows.length == 12 && rows.every((r, k) => r.teacher.index == (k >> 1) && r.teacher.sample == (k & 1)) ? 0 : 1)'
"$S" -q distill-data --teacher T --prompts small.jsonl -o stop.jsonl --max-tokens 48 --stop " the" --stop "e"
check "--stop: answers end before the stop strings (finish_reason stop)" js '
  const rows = require("fs").readFileSync("stop.jsonl","utf8").trim().split("\n").map(JSON.parse);
  const ok = rows.every(r => { const t = r.completion ?? r.messages.at(-1).content;
    return !t.includes(" the") && !t.includes("e") && (r.teacher.finish_reason == "stop" || r.teacher.completion_tokens == 48); });
  process.exit(ok && rows.some(r => r.teacher.finish_reason == "stop") ? 0 : 1)'
cp small.out.jsonl changed.jsonl
"$S" -q distill-data --teacher T --prompts small.jsonl -o changed.jsonl --max-tokens 8 --json > changed.json
check "changed settings: no row reused, the old rows dropped" js '
  const fs = require("fs"); const s = JSON.parse(fs.readFileSync("changed.json","utf8"));
  const rows = fs.readFileSync("changed.jsonl","utf8").trim().split("\n").map(JSON.parse);
  process.exit(s.rows_skipped == 0 && s.rows_written == 6 && rows.length == 6 && rows.every(r => r.teacher.settings.max_tokens == 8) ? 0 : 1)'

# 5. Recipes: a distill-data step over the converted folder, and over a checkpoint converted in
#    the same recipe (from-hf, package-genai), write the rows the command line writes.
"$S" -q distill-data --teacher T --prompts small.jsonl -o cli.jsonl --max-tokens 16 --logprobs 2 --teacher-name fixture
printf '{"input": "T", "output": "ds1", "steps": [{"pass": "distill-data", "options": {"prompts": "small.jsonl", "max-tokens": 16, "logprobs": 2, "teacher-name": "fixture"}}]}\n' > r1.json
printf '{"input": "%s", "output": "ds2", "steps": [{"pass": "from-hf"}, {"pass": "package-genai", "options": {"flavor": "genai"}}, {"pass": "distill-data", "options": {"prompts": "small.jsonl", "max-tokens": 16, "logprobs": 2, "teacher-name": "fixture"}}]}\n' "$HF" > r2.json
"$S" -q run r1.json > /dev/null
check "recipe step over the folder: distill.jsonl equals the command line's output" cmp -s ds1/distill.jsonl cli.jsonl
"$S" -q run r2.json > /dev/null
check "recipe from-hf -> package-genai -> distill-data: the same rows" cmp -s ds2/distill.jsonl cli.jsonl
check "recipe: summary.json beside the rows" js '
  const s = JSON.parse(require("fs").readFileSync("ds2/summary.json","utf8"));
  process.exit(s.rows_written == 6 && s.output == "distill.jsonl" && s.teacher == "fixture" ? 0 : 1)'
printf '{"input": "T", "output": "ds3", "steps": [{"pass": "distill-data", "options": {"max-tokens": 16, "n": 2}}]}\n' > r3.json
"$S" run r3.json > /dev/null 2> r3.err
check "recipe without prompts, n 2 greedy: exit 2, both named" js '
  const e = require("fs").readFileSync("r3.err","utf8");
  process.exit(e.includes("prompts") && e.includes("temperature") && !require("fs").existsSync("ds3") ? 0 : 1)'

# 6. Soft labels from the command line: --prompts naming an .npz, the output beside it by default.
cp "$SRC/tests/fixtures/cnn_digits_test.npz" digits.npz
"$S" -q distill-data --soft-labels --teacher "$SRC/tests/fixtures/cnn_digits.onnx" --prompts digits.npz \
  --temperature 2 --json > soft.json
check "--soft-labels: digits_soft_labels.npz beside the inputs, 540 x 10 at T=2" js '
  const s = JSON.parse(require("fs").readFileSync("soft.json","utf8"));
  process.exit(s.output == "digits_soft_labels.npz" && s.samples == 540 && s.classes == 10 && s.temperature == 2 &&
               require("fs").statSync("digits_soft_labels.npz").size > require("fs").statSync("digits.npz").size ? 0 : 1)'

# 7. Bad input: exit 2, one line naming the file and line, nothing written; --skip-bad-rows goes on.
printf '%s\n' '{"prompt": "Licensor shall"}' '' 'not json' '{"text": "no prompt"}' '{"messages": []}' \
  '{"prompt": "the Work"}' > bad.jsonl
bad_case() {  # NAME EXPECTED-IN-MESSAGE ARGS...
  local name=$1 want=$2
  shift 2
  "$S" distill-data "$@" > /dev/null 2> err.txt
  local rc=$?
  check "$name: exit 2" [ "$rc" -eq 2 ]
  check "$name: one line naming '$want'" js '
    const e = require("fs").readFileSync("err.txt","utf8").trim().split("\n");
    process.exit(e.length == 1 && e[0].includes(process.argv[1]) ? 0 : 1)' "$want"
}
bad_case "row not JSON" "bad.jsonl:3: not JSON" --teacher T --prompts bad.jsonl -o bad.out.jsonl
check "row not JSON: nothing written" [ ! -e bad.out.jsonl ] && [ ! -e bad.out.jsonl.journal ]
printf '%s\n' '{"prompt": "Licensor"}' '{"text": "no prompt"}' > bad2.jsonl
bad_case "row with neither messages nor prompt" "bad2.jsonl:2:" --teacher T --prompts bad2.jsonl -o bad.out.jsonl
bad_case "missing teacher folder" "no-such-dir" --teacher no-such-dir --prompts small.jsonl -o x.jsonl
bad_case "--n 2 without --temperature" "--n 2" --teacher T --prompts small.jsonl -o x.jsonl --n 2
bad_case "output folder missing" "no/such" --teacher T --prompts small.jsonl -o no/such/out.jsonl
bad_case "--shard 3/3" "--shard" --teacher T --prompts small.jsonl -o x.jsonl --shard 3/3
bad_case "a teacher with no KV cache" "KV cache" --teacher "$SRC/tests/fixtures/cnn_digits.onnx" --prompts small.jsonl -o x.jsonl
check "bad input: nothing written" [ ! -e x.jsonl ]
node -e 'console.log(JSON.stringify({prompt: "short"})); console.log(JSON.stringify({prompt: "x".repeat(300)}))' > long.jsonl
bad_case "a prompt longer than the teacher's context" "long.jsonl:2: the prompt's" --teacher T --prompts long.jsonl -o long.out.jsonl --batch-size 1
check "a prompt longer than the context: the row before it kept" js '
  const rows = require("fs").readFileSync("long.out.jsonl","utf8").trim().split("\n").map(JSON.parse);
  process.exit(rows.length == 1 && rows[0].prompt == "short" && !require("fs").existsSync("long.out.jsonl.journal") ? 0 : 1)'
"$S" -q distill-data --teacher T --prompts bad.jsonl -o skip.jsonl --skip-bad-rows --max-tokens 8 --json > skip.json
check "--skip-bad-rows: the 2 good rows written with their indices, 3 bad rows listed by line" js '
  const fs = require("fs"); const s = JSON.parse(fs.readFileSync("skip.json","utf8"));
  const rows = fs.readFileSync("skip.jsonl","utf8").trim().split("\n").map(JSON.parse);
  process.exit(rows.length == 2 && rows[0].teacher.index == 0 && rows[1].teacher.index == 4 && s.rows_bad == 3 &&
               JSON.stringify(s.bad_rows.map(b => b.line)) == "[3,4,5]" ? 0 : 1)'
finish
