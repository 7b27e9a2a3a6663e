#!/usr/bin/env node
// Reference tokenizer for slmops' tokenizer tests: Hugging Face transformers.js
// (@huggingface/transformers, whose tokenizer is @huggingface/tokenizers) loaded strictly from
// a local folder holding tokenizer.json and tokenizer_config.json. No network is used.
//
// Usage:
//   node ref_tokenize.js TOKENIZER_DIR encode FILE       ids, single spaces, one line + "\n"
//   node ref_tokenize.js TOKENIZER_DIR encode-json FILE  {"ids":[...],"tokens":[...]} + "\n"
//   node ref_tokenize.js TOKENIZER_DIR decode FILE [--skip-special]
//                                                         the text, exactly (no newline added)
//   node ref_tokenize.js TOKENIZER_DIR batch OUTDIR FILE...
//       loads once; for each FILE writes OUTDIR/NAME.ids (as encode), NAME.json (as
//       encode-json), NAME.dec and NAME.skip.dec (decode of those ids without/with
//       --skip-special), NAME being FILE's base name (compare.sh uses this)
// encode is HF's default `tokenizer(text)`: add_special_tokens=true, so the tokenizer.json
// post_processor adds what it adds (e.g. BOS). FILE is read as bytes and decoded as UTF-8
// with WHATWG replacement: each maximal invalid subsequence becomes U+FFFD (a warning is
// printed on stderr); a leading BOM is kept as U+FEFF. FILE "-" is stdin.
// decode reads ids separated by spaces, commas or newlines; clean_up_tokenization_spaces is
// taken from tokenizer_config.json (transformers.js defaults it to true when absent).
// Errors: one line on stderr starting with "ref_tokenize: ", exit 1.
'use strict';
const fs = require('fs');
const path = require('path');

function fail(msg) {
  process.stderr.write('ref_tokenize: ' + msg + '\n');
  process.exit(1);
}

async function loadTokenizer(dir) {
  const abs = path.resolve(dir);
  if (!fs.existsSync(path.join(abs, 'tokenizer.json'))) fail('no tokenizer.json in ' + abs);
  if (!fs.existsSync(path.join(abs, 'tokenizer_config.json'))) fail('no tokenizer_config.json in ' + abs);
  const { AutoTokenizer, env } = require('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useBrowserCache = false;
  env.useFSCache = false;
  env.localModelPath = path.dirname(abs) + path.sep;
  return AutoTokenizer.from_pretrained(path.basename(abs), { local_files_only: true });
}

function readText(file) {
  const bytes = file === '-' ? fs.readFileSync(0) : fs.readFileSync(file);
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (e) {
    process.stderr.write('ref_tokenize: warning: ' + file + ' is not valid UTF-8; invalid bytes read as U+FFFD\n');
    text = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(bytes);
  }
  return text;
}

function readIds(file) {
  const s = (file === '-' ? fs.readFileSync(0) : fs.readFileSync(file)).toString('latin1');
  const parts = s.split(/[\s,]+/).filter((x) => x.length);
  return parts.map((p) => {
    if (!/^\d+$/.test(p)) fail('not a token id: ' + JSON.stringify(p));
    return Number(p);
  });
}

// Writes all of s and resolves when it is flushed (large outputs to a pipe).
function write(s) {
  return new Promise((resolve, reject) => process.stdout.write(s, (err) => (err ? reject(err) : resolve())));
}

function decodeText(tok, ids, skip) {
  return ids.length ? tok.decode(ids, { skip_special_tokens: skip }) : '';
}

async function batch(args) {
  if (args.length < 4) fail('usage: ref_tokenize.js TOKENIZER_DIR batch OUTDIR FILE...');
  const [dir, , outdir, ...files] = args;
  const tok = await loadTokenizer(dir);
  fs.mkdirSync(outdir, { recursive: true });
  for (const file of files) {
    const base = path.join(outdir, path.basename(file));
    const enc = tok._tokenizer.encode(readText(file), { add_special_tokens: true });
    fs.writeFileSync(base + '.ids', enc.ids.join(' ') + '\n');
    fs.writeFileSync(base + '.json', JSON.stringify({ ids: enc.ids, tokens: enc.tokens }) + '\n');
    fs.writeFileSync(base + '.dec', Buffer.from(decodeText(tok, enc.ids, false), 'utf8'));
    fs.writeFileSync(base + '.skip.dec', Buffer.from(decodeText(tok, enc.ids, true), 'utf8'));
  }
}

async function main() {
  const args = process.argv.slice(2);
  if (args[1] === 'batch') return batch(args);
  const skip = args.includes('--skip-special');
  const pos = args.filter((a) => a !== '--skip-special');
  if (pos.length !== 3) fail('usage: ref_tokenize.js TOKENIZER_DIR encode|encode-json|decode FILE [--skip-special]');
  const [dir, cmd, file] = pos;
  if (!['encode', 'encode-json', 'decode'].includes(cmd)) fail('unknown command ' + cmd);
  const tok = await loadTokenizer(dir);
  if (cmd === 'encode' || cmd === 'encode-json') {
    const text = readText(file);
    const enc = tok._tokenizer.encode(text, { add_special_tokens: true });
    // Same ids as tok(text).input_ids / tok.encode(text).
    if (cmd === 'encode') await write(enc.ids.join(' ') + '\n');
    else await write(JSON.stringify({ ids: enc.ids, tokens: enc.tokens }) + '\n');
  } else {
    const ids = readIds(file);
    await write(Buffer.from(decodeText(tok, ids, skip), 'utf8'));
  }
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));
