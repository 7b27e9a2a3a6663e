// A loopback OpenAI-compatible /v1/chat/completions server for distill_http.sh (Node 20, no
// packages). `node fake_openai.js` listens on 127.0.0.1, a free port, and prints `PORT <n>` as
// its first line; SIGTERM ends it.
//
// The answer is "echo: " + the last user message's content. Faults are injected by markers in
// that content, counted per content so that they are deterministic whatever the request order:
//   [429]      the first attempt answers 429 with Retry-After: 1
//   [500]      the first two attempts answer 500
//   [drop]     the first attempt's connection is destroyed without an answer
//   [timeout]  the first attempt answers after 4 s (the tests run with --timeout 2)
//   [slow]     every attempt answers after 1.5 s
//   [400]      every attempt answers 400 with an OpenAI-style JSON error
// With FAKE_API_KEY set, a request without `Authorization: Bearer $FAKE_API_KEY` gets 401.
//
// GET /stats: {"max_in_flight", "requests", "per_content": {content: attempts},
//              "times": {content: [ms since start of each attempt]}}
// GET /last:  the last chat request's {"headers", "body"}.   POST /reset: zeroes the counts.
// A request counts as in flight from its arrival until its answer is sent or its connection
// closes, so an attempt the client gave up on (a timeout) stops counting when the client leaves.
'use strict';
const http = require('http');

const key = process.env.FAKE_API_KEY;
// Every answer waits this long (bench/distill_bench.sh: a teacher that takes time to answer).
const latencyMs = Number(process.env.FAKE_LATENCY_MS || 0);
const t0 = Date.now();
let stats;
let last = null;
function reset() {
  stats = {max_in_flight: 0, requests: 0, per_content: {}, times: {}};
}
reset();
let inFlight = 0;

function send(res, status, body, headers = {}) {
  if (res.destroyed || res.writableEnded) return;  // the client left (it timed out)
  const text = JSON.stringify(body);
  res.writeHead(status, {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers});
  res.end(text);
}

function text(content) {  // a message's content: a string, or OpenAI content parts
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p) => (p && typeof p.text === 'string' ? p.text : '')).join('');
  return '';
}
const words = (s) => s.split(/\s+/).filter((w) => w.length > 0);

function completion(body, content) {
  const answer = 'echo: ' + content;
  const choice = {index: 0, message: {role: 'assistant', content: answer}, finish_reason: 'stop'};
  if (body.logprobs) {
    const k = Number(body.top_logprobs) || 0;
    choice.logprobs = {
      content: words(answer).map((w, i) => {
        const logprob = -0.125 * (i + 1);
        const top = [{token: w, logprob}];
        for (let j = 1; j < k; j++) top.push({token: `${w}~${j}`, logprob: logprob - j});
        return {token: w, logprob, top_logprobs: top.slice(0, k)};
      }),
    };
  }
  const prompt = body.messages.reduce((n, m) => n + words(text(m && m.content)).length, 0);
  const done = words(answer).length;
  return {
    id: 'chatcmpl-fake',
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: body.model || 'fake-teacher',
    choices: [choice],
    usage: {prompt_tokens: prompt, completion_tokens: done, total_tokens: prompt + done},
  };
}

function chat(req, res, raw) {
  stats.requests++;
  if (key !== undefined && req.headers.authorization !== `Bearer ${key}`) {
    return send(res, 401, {error: {message: 'Incorrect API key provided', type: 'invalid_request_error'}});
  }
  let body;
  try {
    body = JSON.parse(raw);
  } catch (e) {
    return send(res, 400, {error: {message: 'the body is not JSON: ' + e.message}});
  }
  last = {headers: req.headers, body};
  if (!Array.isArray(body.messages) || body.messages.length === 0) {
    return send(res, 400, {error: {message: "'messages' must be a non-empty array"}});
  }
  const user = [...body.messages].reverse().find((m) => m && m.role === 'user');
  const content = user ? text(user.content) : '';
  const attempt = (stats.per_content[content] = (stats.per_content[content] || 0) + 1);
  (stats.times[content] = stats.times[content] || []).push(Date.now() - t0);

  const answer = () => send(res, 200, completion(body, content));
  if (content.includes('[400]')) {
    return send(res, 400, {error: {message: 'Invalid request: [400] in the prompt', type: 'invalid_request_error'}});
  }
  if (content.includes('[429]') && attempt === 1) {
    return send(res, 429, {error: {message: 'Rate limit reached', type: 'requests'}}, {'Retry-After': '1'});
  }
  if (content.includes('[500]') && attempt <= 2) return send(res, 500, {error: {message: 'The server had an error'}});
  if (content.includes('[drop]') && attempt === 1) return req.socket.destroy();
  if (content.includes('[timeout]') && attempt === 1) return setTimeout(answer, 4000);
  if (content.includes('[slow]')) return setTimeout(answer, 1500);
  if (latencyMs > 0) return setTimeout(answer, latencyMs);
  answer();
}

const server = http.createServer((req, res) => {
  const url = req.url.split('?')[0];
  if (req.method === 'GET' && url === '/stats') return send(res, 200, stats);
  if (req.method === 'GET' && url === '/last') return send(res, 200, last);
  if (req.method === 'POST' && url === '/reset') {
    reset();
    return send(res, 200, {});
  }
  if (req.method !== 'POST' || url !== '/v1/chat/completions') {
    return send(res, 404, {error: {message: `no route ${req.method} ${req.url}`}});
  }
  stats.max_in_flight = Math.max(stats.max_in_flight, ++inFlight);
  let counted = true;
  res.on('close', () => {  // answered, or the connection went away: once either way
    if (counted) inFlight--;
    counted = false;
  });
  let raw = '';
  req.setEncoding('utf8');
  req.on('data', (d) => (raw += d));
  req.on('end', () => chat(req, res, raw));
});
server.listen(0, '127.0.0.1', () => console.log(`PORT ${server.address().port}`));
process.on('SIGTERM', () => process.exit(0));
