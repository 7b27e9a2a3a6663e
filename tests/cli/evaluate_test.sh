#!/usr/bin/env bash
# evaluate end to end on the fixtures: accuracy and perplexity equal PyTorch's figures
# (tests/fixtures/reference.json), a model against itself has perfect fidelity, goals gate
# with exit 3, 3 merged shards give the figures of one run, and --no-optimize runs the graph as
# written with the same figures.
# Usage: evaluate_test.sh SLMOPS_BINARY SOURCE_DIR
set -u
S=$1
SRC=$2
FX=$SRC/tests/fixtures
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-eval-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
source "$(dirname "$0")/testlib.sh"
js() {  # js 'expression over r (the report) and ref (reference.json)' REPORT
  node -e "const fs = require('fs'); const r = JSON.parse(fs.readFileSync('$2', 'utf8'));
           const ref = JSON.parse(fs.readFileSync('$FX/reference.json', 'utf8'));
           const ok = ($1); if (!ok) { console.error('  got', JSON.stringify(r.metrics)); process.exit(1); }"
}

"$S" -q evaluate "$FX/cnn_digits.onnx" --data "$FX/cnn_digits_test.npz" --batch-size 32 --json > "$WORK/cnn.json"
check "CNN: same count of correct samples as PyTorch" \
  js "r.metrics.correct === ref.cnn_digits.correct && r.metrics.samples === ref.cnn_digits.n" "$WORK/cnn.json"
check "CNN: latency, size and memory are reported" \
  js "r.metrics.latency_ms.p50 > 0 && r.metrics.size_bytes > 40000 && r.metrics.peak_rss_bytes > 0" "$WORK/cnn.json"

for lm in gpt_bytes llama_bytes; do
  for data in lm_eval.npz lm_eval.jsonl; do
    "$S" -q evaluate "$FX/$lm.onnx" --data "$FX/$data" --batch-size 8 --json > "$WORK/$lm.$data.json"
    check "$lm on $data: perplexity within 0.5% of PyTorch's" \
      js "Math.abs(r.metrics.perplexity / ref.$lm.perplexity - 1) < 0.005 && r.metrics.tokens === ref.$lm.tokens" \
      "$WORK/$lm.$data.json"
  done
done

# Text rows (#15): {"text": ...} through --tokenizer (the fixture LMs' byte-level tokenizer.json)
# give the same ids as the pre-tokenized rows, so exactly the same perplexity and token count;
# one long text cut by --context-length 64 gives the same 64-token rows; a model folder holding
# tokenizer.json is used when --tokenizer is not given.
ids_json=$WORK/gpt_bytes.lm_eval.jsonl.json
"$S" -q evaluate "$FX/gpt_bytes.onnx" --data "$FX/lm_eval_text.jsonl" --tokenizer "$FX/bytes_tokenizer" \
  --batch-size 8 --json > "$WORK/text.json"
same_ppl="r.metrics.perplexity === JSON.parse(fs.readFileSync('$ids_json', 'utf8')).metrics.perplexity &&
          r.metrics.tokens === JSON.parse(fs.readFileSync('$ids_json', 'utf8')).metrics.tokens"
check "text rows + --tokenizer: perplexity and tokens equal the pre-tokenized rows'" js "$same_ppl" "$WORK/text.json"
"$S" -q evaluate "$FX/gpt_bytes.onnx" --data "$FX/lm_eval_longtext.jsonl" --tokenizer "$FX/bytes_tokenizer/tokenizer.json" \
  --context-length 64 --batch-size 8 --json > "$WORK/long.json"
check "one long text row cut by --context-length 64: the same perplexity" js "$same_ppl" "$WORK/long.json"
# --stride: Hugging Face's sliding-window perplexity. A stride equal to the window is the plain
# cut; a shorter one scores every token but the first exactly once (4096 bytes: 4095 tokens).
"$S" -q evaluate "$FX/gpt_bytes.onnx" --data "$FX/lm_eval_longtext.jsonl" --tokenizer "$FX/bytes_tokenizer" \
  --context-length 64 --stride 64 --batch-size 8 --json > "$WORK/stride64.json"
check "--stride equal to --context-length: the plain cut's perplexity" js "$same_ppl" "$WORK/stride64.json"
for st in 32 7; do
  "$S" -q evaluate "$FX/gpt_bytes.onnx" --data "$FX/lm_eval_longtext.jsonl" --tokenizer "$FX/bytes_tokenizer" \
    --context-length 64 --stride $st --batch-size 1 --json > "$WORK/stride$st.json"
  check "--stride $st: every token but the first scored once (4095), with more context a lower perplexity" \
    js "r.metrics.tokens === 4095 && r.metrics.perplexity < JSON.parse(fs.readFileSync('$ids_json', 'utf8')).metrics.perplexity" \
    "$WORK/stride$st.json"
done

# Chat rows {"messages": [...]}: the tokenizer folder's chat template, tokenized without special
# tokens (as apply_chat_template(tokenize=True)); the same perplexity as the ids that
# `slmops tokenize --chat --ids` gives for the same conversations.
mkdir -p "$WORK/chat_tok"
cp "$FX/bytes_tokenizer/tokenizer.json" "$WORK/chat_tok/"
printf '%s\n' '{"chat_template": "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content | trim }}\n{% endfor %}"}' \
  > "$WORK/chat_tok/tokenizer_config.json"
: > "$WORK/chat.jsonl"
: > "$WORK/chat_ids.jsonl"
for k in 0 1 2; do
  conv=$(node -e "const t = require('fs').readFileSync('$FX/lm_eval_text.jsonl', 'utf8').split('\n');
    const x = (i) => JSON.parse(t[i]).text.slice(0, 12);  // the fixture LM's context is 64 tokens
    console.log(JSON.stringify([{role: 'user', content: x($k)}, {role: 'assistant', content: x($k + 3)}]))")
  printf '{"messages": %s}\n' "$conv" >> "$WORK/chat.jsonl"
  printf '%s' "$conv" > "$WORK/conv$k.json"
  ids=$("$S" tokenize --tokenizer "$WORK/chat_tok" --chat "$WORK/conv$k.json" --ids | tr ' ' ',')
  printf '{"input_ids": [%s]}\n' "$ids" >> "$WORK/chat_ids.jsonl"
done
"$S" -q evaluate "$FX/gpt_bytes.onnx" --data "$WORK/chat.jsonl" --tokenizer "$WORK/chat_tok" --json > "$WORK/chat.json"
"$S" -q evaluate "$FX/gpt_bytes.onnx" --data "$WORK/chat_ids.jsonl" --json > "$WORK/chat_ids.json"
check "chat rows: the perplexity and tokens of the chat template's ids" \
  js "r.metrics.tokens > 100 && r.metrics.perplexity === JSON.parse(fs.readFileSync('$WORK/chat_ids.json', 'utf8')).metrics.perplexity && r.metrics.tokens === JSON.parse(fs.readFileSync('$WORK/chat_ids.json', 'utf8')).metrics.tokens" \
  "$WORK/chat.json"

mkdir -p "$WORK/folder"
cp "$FX/gpt_bytes.onnx" "$FX/bytes_tokenizer/tokenizer.json" "$WORK/folder/"
"$S" -q evaluate "$WORK/folder/gpt_bytes.onnx" --data "$FX/lm_eval_text.jsonl" --batch-size 8 --json > "$WORK/own.json"
check "the model folder's own tokenizer.json when --tokenizer is not given" js "$same_ppl" "$WORK/own.json"

# The evaluator optimizes a copy of the model before it runs it (passes/optimize); --no-optimize
# runs the graph as written. Both give the same perplexity; the report says which ran.
check "by default the report says the graph was optimized, with fewer nodes" \
  js "r.optimized === true && r.optimize.nodes_after < r.optimize.nodes_before" "$WORK/gpt_bytes.lm_eval.npz.json"
"$S" -q evaluate "$FX/gpt_bytes.onnx" --data "$FX/lm_eval.npz" --batch-size 8 --no-optimize --json > "$WORK/asis.json"
check "--no-optimize: the report says the graph ran as written" js "r.optimized === false && !r.optimize" "$WORK/asis.json"
check "... and the perplexity equals the optimized run's within 1e-5 (relative)" \
  js "Math.abs(r.metrics.perplexity / JSON.parse(fs.readFileSync('$WORK/gpt_bytes.lm_eval.npz.json', 'utf8')).metrics.perplexity - 1) < 1e-5" \
  "$WORK/asis.json"
"$S" -q evaluate "$FX/gpt_bytes.onnx" --data "$FX/lm_eval.npz" --batch-size 8 --optimize false --json > "$WORK/asis2.json"
check "--optimize false is the same switch" js "r.optimized === false" "$WORK/asis2.json"
"$S" -q evaluate "$FX/gpt_bytes.onnx" --data "$FX/lm_eval.npz" --batch-size 8 > "$WORK/human.txt"
check "the text report names the graph that ran" grep -q "^graph    optimized (175 -> 85 nodes)" "$WORK/human.txt"
# A model pre-fused for ONNX Runtime (convert --optimize --target onnxruntime: FusedMatMul,
# BiasGelu) runs in the executor too, with the same perplexity.
"$S" -q convert "$FX/gpt_bytes.onnx" -o "$WORK/gpt_ort.onnx" --optimize --target onnxruntime > /dev/null
"$S" -q evaluate "$WORK/gpt_ort.onnx" --data "$FX/lm_eval.npz" --batch-size 8 --json > "$WORK/ort_fused.json"
check "an onnxruntime-fused model evaluates to the same perplexity within 1e-5 (relative)" \
  js "Math.abs(r.metrics.perplexity / JSON.parse(fs.readFileSync('$WORK/gpt_bytes.lm_eval.npz.json', 'utf8')).metrics.perplexity - 1) < 1e-5" \
  "$WORK/ort_fused.json"

"$S" -q evaluate "$FX/gpt_bytes.onnx" --data "$FX/lm_eval.npz" --batch-size 8 --baseline "$FX/gpt_bytes.onnx" \
  --json --report "$WORK/self.md" > "$WORK/self.json"
check "a model against itself: SNR inf, KL 0, agreement 1" \
  js "r.metrics.fidelity.snr_db === 'inf' && r.metrics.fidelity.kl === 0 && r.metrics.fidelity.top1_agreement === 1 && r.metrics.fidelity.max_abs_err === 0" \
  "$WORK/self.json"
check "... the Markdown report has both columns" grep -q "| perplexity |" "$WORK/self.md"

"$S" -q evaluate "$FX/cnn_digits.onnx" --data "$FX/cnn_digits_test.npz" --batch-size 32 \
  --goal accuracy:threshold:0.95 --goal size:threshold:100000 > /dev/null
check "goals that hold: exit 0" test $? -eq 0
"$S" -q evaluate "$FX/cnn_digits.onnx" --data "$FX/cnn_digits_test.npz" --batch-size 32 \
  --goal accuracy:threshold:0.999 > /dev/null 2> "$WORK/goal.err"
check "a goal that fails: exit 3" test $? -eq 3
check "... naming the goal on stderr" grep -q "goal accuracy:threshold:0.999 not met" "$WORK/goal.err"
"$S" -q evaluate "$FX/gpt_bytes.onnx" --data "$FX/lm_eval.npz" --batch-size 8 --baseline "$FX/gpt_bytes.onnx" \
  --goal perplexity:percent-max-degradation:5 --goal top1_agreement:threshold:0.99 > /dev/null
check "relative goals against a baseline: exit 0" test $? -eq 0

for i in 0 1 2; do
  "$S" -q evaluate "$FX/cnn_digits.onnx" --data "$FX/cnn_digits_test.npz" --batch-size 32 \
    --baseline "$FX/cnn_digits.onnx" --shard $i/3 --json > "$WORK/shard$i.json"
done
"$S" -q evaluate --merge "$WORK/shard0.json" "$WORK/shard1.json" "$WORK/shard2.json" --json > "$WORK/merged.json"
"$S" -q evaluate "$FX/cnn_digits.onnx" --data "$FX/cnn_digits_test.npz" --batch-size 32 \
  --baseline "$FX/cnn_digits.onnx" --json > "$WORK/single.json"
strip() {  # metrics without timings and memory
  node -e "const r = JSON.parse(require('fs').readFileSync('$1', 'utf8')); const m = r.metrics;
           delete m.latency_ms; delete m.throughput; delete m.peak_rss_bytes; delete m.memory; console.log(JSON.stringify(m))"
}
check "3 merged shards equal one run (metrics without timings)" test "$(strip "$WORK/merged.json")" = "$(strip "$WORK/single.json")"
check "... and the shards were disjoint and non-empty" \
  js "r.merged_from.length === 3 && r.samples === 540" "$WORK/merged.json"
"$S" -q evaluate "$FX/cnn_digits.onnx" --data "$FX/cnn_digits_test.npz" --shard 3/3 > /dev/null 2>&1
check "a bad --shard is exit 2" test $? -eq 2
"$S" -q evaluate "$FX/cnn_digits.onnx" --random --samples 3 --json > "$WORK/random.json"
check "--random inputs give a latency report" js "r.metrics.latency_ms.batches === 3" "$WORK/random.json"

finish
