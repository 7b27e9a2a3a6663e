#!/usr/bin/env bash
# slmops distill-data against an OpenAI-compatible endpoint: fake_openai.js, a loopback server
# (Node, no packages) that answers "echo: " + the last user message and injects faults by markers
# in it ([429] [500] [drop] [timeout] [slow] [400]), counting every attempt. Checks the rows
# written (one per prompt, in prompt order, other keys carried, the assistant turn or completion),
# the retries reported against the faults the server saw, the --concurrency bound as the server
# saw it, resuming, API keys, the errors that end a run (exit 2, one line, finished rows kept),
# an unreachable URL and --requests-per-minute.
# Usage: distill_http.sh SLMOPS_BINARY
set -euo pipefail
S=$1
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-distill-http-XXXXXX")
SERVERS=()
cleanup() {
  for pid in "${SERVERS[@]}"; do kill "$pid" 2> /dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=../../cli/testlib.sh
. "$HERE/../../cli/testlib.sh"  # check NAME COMMAND..., finish

# start_server NAME: runs fake_openai.js (in the caller's environment); sets PORT and PID.
start_server() {
  node "$HERE/fake_openai.js" > "$WORK/$1.out" 2> "$WORK/$1.err" &
  PID=$!
  SERVERS+=("$PID")
  PORT=
  for _ in $(seq 100); do
    PORT=$(sed -n 's/^PORT \([0-9][0-9]*\)$/\1/p' "$WORK/$1.out")
    [ -n "$PORT" ] && return 0
    sleep 0.1
  done
  echo "FAIL fake_openai.js did not start: $(head -c 300 "$WORK/$1.err")"
  exit 1
}
# get PORT PATH (GET) / reset PORT (POST /reset)
get() {
  node -e "require('http').get('http://127.0.0.1:$1$2', r => { let s = ''; r.on('data', d => s += d).on('end', () => process.stdout.write(s)); }).on('error', e => { console.error(e.message); process.exit(1); })"
}
requests() {  # requests PORT: the chat requests the server has seen since its last reset
  get "$1" /stats | node -e "let s = ''; process.stdin.on('data', d => s += d).on('end', () => console.log(JSON.parse(s).requests))"
}
reset() {
  node -e "require('http').request({host: '127.0.0.1', port: $1, path: '/reset', method: 'POST'}, r => r.resume()).on('error', e => { console.error(e.message); process.exit(1); }).end()"
}
# distill PORT PROMPTS OUT FLAGS...: runs distill-data against the server; RC, the summary in
# $WORK/summary.json, stderr in $WORK/err.
distill() {
  local port=$1 prompts=$2 out=$3
  shift 3
  RC=0
  "$S" -q distill-data --teacher "http://127.0.0.1:$port" --model fake --prompts "$prompts" -o "$out" "$@" --json \
    > "$WORK/summary.json" 2> "$WORK/err" || RC=$?
}
err_line() { head -c 300 "$WORK/err" | tr '\n' ' '; }
# failed_naming TEXT: the run exited 2 with one line on stderr, naming TEXT.
failed_naming() { [ "$RC" -eq 2 ] && [ "$(wc -l < "$WORK/err")" -eq 1 ] && grep -qF -- "$1" "$WORK/err"; }
# js 'EXPRESSION' [ARGS]: exit 0 when the expression is true; `s` is the summary, `a` the args.
js() {
  node -e "const s = JSON.parse(require('fs').readFileSync('$WORK/summary.json', 'utf8') || 'null'); const a = process.argv.slice(1); process.exit(($1) ? 0 : 1)" "${@:2}"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# rows_ok PROMPTS OUT [COUNT]: OUT holds exactly the answers to the first COUNT (default: all)
# prompt rows, one line each, in prompt order: the prompt row's keys carried, a messages row with
# {"role": "assistant", "content": "echo: <last user content>"} appended, a prompt row with
# "completion": "echo: <prompt>", and `teacher` metadata with the server's token counts.
cat > "$WORK/rows_ok.js" << 'EOF'
const fs = require('fs');
const [promptsFile, outFile, count] = process.argv.slice(2);
const lines = (f) => fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.length > 0);
const prompts = lines(promptsFile).map((l) => JSON.parse(l));
const n = count === undefined ? prompts.length : Number(count);
const words = (s) => s.split(/\s+/).filter((w) => w.length > 0).length;
const same = (x, y) => JSON.stringify(x) === JSON.stringify(y);
function problem() {
  const out = lines(outFile);
  if (out.length !== n) return `${out.length} rows, expected ${n}`;
  const teacherKeys = ['model', 'settings', 'index', 'sample', 'key', 'finish_reason', 'prompt_tokens', 'completion_tokens'];
  for (let i = 0; i < n; i++) {
    let row;
    try {
      row = JSON.parse(out[i]);
    } catch (e) {
      return `row ${i} is not JSON: ${e.message}`;
    }
    const p = prompts[i];
    const t = row.teacher || {};
    if (t.index !== i || t.sample !== 0) return `row ${i}: teacher.index ${t.index}, sample ${t.sample}`;
    if (!same(Object.keys(t).filter((k) => k !== 'logprobs'), teacherKeys)) return `row ${i}: teacher keys ${Object.keys(t)}`;
    if (t.model !== 'fake' || t.finish_reason !== 'stop' || typeof t.key !== 'string' || t.key.length === 0) {
      return `row ${i}: teacher ${JSON.stringify(t)}`;
    }
    const keys = Object.keys(p).concat(p.messages ? [] : ['completion'], ['teacher']);
    if (!same(Object.keys(row).sort(), keys.sort())) return `row ${i}: keys ${Object.keys(row)}, expected ${keys}`;
    if (Object.keys(row).pop() !== 'teacher') return `row ${i}: teacher is not the last key`;
    for (const k of Object.keys(p)) {
      if (k !== 'messages' && !same(row[k], p[k])) return `row ${i}: ${k} not carried`;
    }
    let answer;
    if (p.messages) {
      const user = p.messages.filter((m) => m.role === 'user').pop().content;
      answer = 'echo: ' + user;
      if (!same(row.messages, p.messages.concat([{role: 'assistant', content: answer}]))) {
        return `row ${i}: messages ${JSON.stringify(row.messages).slice(0, 200)}`;
      }
    } else {
      answer = 'echo: ' + p.prompt;
      if (row.completion !== answer) return `row ${i}: completion ${JSON.stringify(row.completion)}`;
    }
    if (t.completion_tokens !== words(answer) || !(t.prompt_tokens > 0)) {
      return `row ${i}: tokens ${t.prompt_tokens} + ${t.completion_tokens}, the server said ${words(answer)} answer words`;
    }
  }
  return null;
}
const p = problem();
if (p) console.error('     ' + p);
process.exit(p ? 1 : 0);
EOF
rows_ok() { node "$WORK/rows_ok.js" "$@"; }

# ---- 40 rows: messages rows (some with a system turn, some multi-turn) and prompt rows, with
# the faults spread over them.
node -e "
const m = {3: '[429]', 8: '[500]', 12: '[slow]', 13: '[slow]', 14: '[slow]', 19: '[drop]', 23: '[429]', 26: '[timeout]',
           30: '[500]', 33: '[drop]', 36: '[slow]', 37: '[slow]'};
const rows = [];
for (let i = 0; i < 40; i++) {
  const text = 'q' + i + (i === 9 ? ' ünïcödé ✓ \"quoted\"' : ' tell me about ' + i) + (m[i] ? ' ' + m[i] : '');
  if (i % 3 === 1) rows.push({prompt: text, id: i});
  else if (i % 5 === 0) rows.push({messages: [{role: 'user', content: 'hi ' + i}, {role: 'assistant', content: 'hello'},
                                              {role: 'user', content: text}], id: i, source: 'multi'});
  else rows.push({messages: [{role: 'system', content: 'You are terse.'}, {role: 'user', content: text}], id: i});
}
require('fs').writeFileSync('$WORK/p.jsonl', rows.map((r) => JSON.stringify(r)).join('\n') + '\n');"
N=40
INJECTED=9  # attempts that fail: [429] 1 each, [500] 2 each, [drop] 1 each, [timeout] 1 (x2, x2, x2, x1)

start_server main
MAIN=$PORT
OUT=$WORK/out.jsonl
t0=$(now_ms)
distill "$MAIN" "$WORK/p.jsonl" "$OUT" --concurrency 4 --max-retries 6 --retry-backoff 0.05 --timeout 2
echo "     first run: $(($(now_ms) - t0)) ms; summary $(node -e "console.log(JSON.stringify(JSON.parse(require('fs').readFileSync('$WORK/summary.json', 'utf8'))))" 2> /dev/null | head -c 500)"
check "40 rows with 429/500/dropped/timed-out/slow answers: exit 0 ($(err_line))" [ "$RC" -eq 0 ]
check "one row per prompt, in prompt order, keys carried, the echoed answer appended" rows_ok "$WORK/p.jsonl" "$OUT"
get "$MAIN" /stats > "$WORK/stats.json"
get "$MAIN" /last > "$WORK/last.json"
STATS=$WORK/stats.json
echo "     server: $(node -e "const j = require('$STATS'); console.log('requests ' + j.requests + ', max in flight ' + j.max_in_flight)")"
check "the server had at most 4 and at least 2 requests open at once" \
  node -e "const j = require('$STATS'); process.exit(j.max_in_flight <= 4 && j.max_in_flight >= 2 ? 0 : 1)"
check "each faulty prompt was tried exactly as often as its fault needs ([429] 2, [500] 3, [drop] 2, [timeout] 2, others 1)" \
  node -e "
const j = require('$STATS');
const want = (c) => c.includes('[500]') ? 3 : /\[(429|drop|timeout)\]/.test(c) ? 2 : 1;
const bad = Object.entries(j.per_content).filter(([c, n]) => n !== want(c));
if (bad.length) console.error('     ' + JSON.stringify(bad));
process.exit(Object.keys(j.per_content).length === $N && bad.length === 0 ? 0 : 1)"
check "a 429 with Retry-After: 1 was retried after at least 1 s; a 500 after the back-off (>= 0.025 s)" \
  node -e "
const j = require('$STATS');
const gaps = (m) => Object.entries(j.times).filter(([c]) => c.includes(m)).map(([, t]) => t[1] - t[0]);
const g429 = gaps('[429]'), g500 = gaps('[500]');
console.log('     gaps: [429] ' + g429 + ' ms, [500] ' + g500 + ' ms');
process.exit(g429.length === 2 && g429.every((g) => g >= 950) && g500.every((g) => g >= 20) ? 0 : 1)"
check "summary: retries = the failed attempts the server saw ($INJECTED), requests = the server's count, max_in_flight <= 4" \
  js "s.retries === $INJECTED && s.requests === JSON.parse(a[0]).requests && s.requests === $N + $INJECTED && s.max_in_flight >= 1 && s.max_in_flight <= 4" \
  "$(cat "$STATS")"
check "summary: rows_total $N, rows_written $N, rows_skipped 0, rows_bad 0, tokens = the rows' sums" \
  js "(() => { const rows = require('fs').readFileSync('$OUT', 'utf8').trim().split('\n').map((l) => JSON.parse(l).teacher);
               const sum = (k) => rows.reduce((n, t) => n + t[k], 0);
               return s.rows_total === $N && s.rows_written === $N && s.rows_skipped === 0 && s.rows_bad === 0 &&
                      s.prompt_tokens === sum('prompt_tokens') && s.completion_tokens === sum('completion_tokens') &&
                      s.output.length > 0 && s.seconds > 0 && s.tokens_per_s >= 0; })()"
check "the request: model, messages, max_tokens, temperature, n 1, an integer seed; no top_p at 1, no key sent" \
  node -e "
const {headers, body} = require('$WORK/last.json');
const ok = body.model === 'fake' && Array.isArray(body.messages) && Number.isInteger(body.max_tokens) &&
  typeof body.temperature === 'number' && body.n === 1 && Number.isInteger(body.seed) && !('top_p' in body) &&
  !('logprobs' in body) && !headers.authorization && headers['content-type'].startsWith('application/json');
if (!ok) console.error('     ' + JSON.stringify({headers, body}).slice(0, 300));
process.exit(ok ? 0 : 1)"

# Resume: everything is finished, so nothing is asked and nothing is written.
cp "$OUT" "$WORK/out.first"
before=$(requests "$MAIN")
distill "$MAIN" "$WORK/p.jsonl" "$OUT" --concurrency 4 --max-retries 6 --retry-backoff 0.05 --timeout 2
check "re-run: exit 0, rows_written 0, rows_skipped $N, no request sent ($(err_line))" \
  js "s.rows_written === 0 && s.rows_skipped === $N && a[0] === a[1]" "$before" "$(requests "$MAIN")"
check "re-run: the output byte-identical" cmp -s "$OUT" "$WORK/out.first"

# --concurrency 1: never two requests open (two slow rows would overlap otherwise).
node -e "
const rows = [];
for (let i = 0; i < 6; i++) rows.push(i % 2 ? {prompt: 'c' + i + (i < 4 ? ' [slow]' : ''), id: 'c' + i}
                                          : {messages: [{role: 'user', content: 'c' + i}]});
require('fs').writeFileSync('$WORK/c.jsonl', rows.map((r) => JSON.stringify(r)).join('\n') + '\n');"
reset "$MAIN"
distill "$MAIN" "$WORK/c.jsonl" "$WORK/c.out.jsonl" --concurrency 1 --retry-backoff 0.05 --timeout 2
get "$MAIN" /stats > "$STATS"
check "--concurrency 1: exit 0, all 6 rows ($(err_line))" rows_ok "$WORK/c.jsonl" "$WORK/c.out.jsonl"
check "--concurrency 1: the server never had two requests open; summary max_in_flight 1" \
  js "JSON.parse(a[0]).max_in_flight === 1 && s.max_in_flight === 1" "$(cat "$STATS")"

# --logprobs: per generated token, the chosen token's and the top-K log-probabilities.
node -e "require('fs').writeFileSync('$WORK/l.jsonl', '{\"prompt\": \"lp one two\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"lp three\"}]}\n')"
distill "$MAIN" "$WORK/l.jsonl" "$WORK/l.out.jsonl" --logprobs 2 --retry-backoff 0.05
check "--logprobs 2: teacher.logprobs holds tokens, chosen, top_tokens, top_values per answer word ($(err_line))" \
  node -e "
const rows = require('fs').readFileSync('$WORK/l.out.jsonl', 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const ok = rows.length === 2 && rows.every((r) => {
  const lp = r.teacher.logprobs, answer = r.completion || r.messages[r.messages.length - 1].content;
  return lp && JSON.stringify(Object.keys(lp)) === '[\"tokens\",\"chosen\",\"top_tokens\",\"top_values\"]' &&
    lp.tokens.join(' ') === answer && lp.chosen.length === lp.tokens.length &&
    lp.top_tokens.every((t, i) => t.length === 2 && t[0] === lp.tokens[i]) &&
    lp.top_values.every((v, i) => v.length === 2 && v[0] === lp.chosen[i] && v[1] < v[0]);
});
process.exit(ok ? 0 : 1)"

# API keys.
head -n 4 "$WORK/p.jsonl" | sed 's/\[429\]//' > "$WORK/k.jsonl"
unset NO_SUCH_VAR
reset "$MAIN"
distill "$MAIN" "$WORK/k.jsonl" "$WORK/k0.jsonl" --api-key-env NO_SUCH_VAR
check "--api-key-env NO_SUCH_VAR (unset): exit 2, one line naming it ($(err_line))" \
  failed_naming NO_SUCH_VAR
check "--api-key-env NO_SUCH_VAR (unset): nothing sent" [ "$(requests "$MAIN")" -eq 0 ]
FAKE_API_KEY=sekrit start_server keyed
KEYED=$PORT
export GOOD_KEY=sekrit BAD_KEY=wrong
distill "$KEYED" "$WORK/k.jsonl" "$WORK/k1.jsonl" --api-key-env GOOD_KEY
check "--api-key-env with the server's key: exit 0, all 4 rows ($(err_line))" rows_ok "$WORK/k.jsonl" "$WORK/k1.jsonl"
check "the key went as Authorization: Bearer and api-key" \
  node -e "const h = JSON.parse(process.argv[1]).headers; process.exit(h.authorization === 'Bearer sekrit' && h['api-key'] === 'sekrit' ? 0 : 1)" \
  "$(get "$KEYED" /last)"
reset "$KEYED"
distill "$KEYED" "$WORK/k.jsonl" "$WORK/k2.jsonl" --api-key-env BAD_KEY --concurrency 1 --max-retries 6 --retry-backoff 0.05
check "a wrong key: exit 2, one line naming 401 ($(err_line))" failed_naming 401
check "a wrong key: the 401 was not retried (1 request)" [ "$(requests "$KEYED")" -eq 1 ]

# A request the endpoint rejects (400) ends the run; the rows finished before it are kept and a
# re-run without it skips them.
node -e "
const rows = [];
for (let i = 0; i < 10; i++) rows.push(i % 2 ? {prompt: 'e' + i + (i === 5 ? ' [400]' : ''), id: i}
                                           : {messages: [{role: 'user', content: 'e' + i}], id: i});
const w = (f, rs) => require('fs').writeFileSync(f, rs.map((r) => JSON.stringify(r)).join('\n') + '\n');
w('$WORK/e.jsonl', rows);
w('$WORK/e9.jsonl', rows.filter((r) => r.id !== 5));"
reset "$MAIN"
distill "$MAIN" "$WORK/e.jsonl" "$WORK/e.out.jsonl" --concurrency 1 --max-retries 6 --retry-backoff 0.05
check "a [400] row: exit 2, one line naming 400 ($(err_line))" failed_naming 400
check "a [400] row: not retried" \
  node -e "process.exit(JSON.parse(process.argv[1]).per_content['e5 [400]'] === 1 ? 0 : 1)" "$(get "$MAIN" /stats)"
check "a [400] row: the 5 rows finished before it are in the output" rows_ok "$WORK/e.jsonl" "$WORK/e.out.jsonl" 5
distill "$MAIN" "$WORK/e9.jsonl" "$WORK/e.out.jsonl" --concurrency 1 --max-retries 6 --retry-backoff 0.05
check "re-run without the [400] row: exit 0, rows_skipped 5, rows_written 4 ($(err_line))" \
  js "s.rows_skipped === 5 && s.rows_written === 4"
check "re-run without the [400] row: all 9 rows in order" rows_ok "$WORK/e9.jsonl" "$WORK/e.out.jsonl"

# An unreachable URL: a port that a server listened on and no longer does.
start_server gone
DEAD=$PORT
kill "$PID"
wait "$PID" 2> /dev/null || true
distill "$DEAD" "$WORK/k.jsonl" "$WORK/dead.jsonl" --max-retries 1 --retry-backoff 0.01
check "an unreachable URL: exit 2, one line naming it ($(err_line))" \
  failed_naming "127.0.0.1:$DEAD"

# --requests-per-minute 120: attempts start at most every 0.5 s, whatever --concurrency allows.
node -e "require('fs').writeFileSync('$WORK/r.jsonl', [0, 1, 2, 3].map((i) => JSON.stringify({prompt: 'rpm ' + i})).join('\n') + '\n')"
reset "$MAIN"
t0=$(now_ms)
distill "$MAIN" "$WORK/r.jsonl" "$WORK/r.out.jsonl" --concurrency 4 --requests-per-minute 120
elapsed=$(($(now_ms) - t0))
check "--requests-per-minute 120: exit 0 ($(err_line))" [ "$RC" -eq 0 ]
check "--requests-per-minute 120: 4 rows took $elapsed ms (>= 1400)" [ "$elapsed" -ge 1400 ]
check "--requests-per-minute 120: the server saw the 4 requests start >= 0.45 s apart" \
  node -e "
const t = Object.values(JSON.parse(process.argv[1]).times).map((x) => x[0]).sort((a, b) => a - b);
console.log('     starts (ms): ' + t);
process.exit(t.length === 4 && t.every((x, i) => i === 0 || x - t[i - 1] >= 450) ? 0 : 1)" "$(get "$MAIN" /stats)"

finish
