#!/usr/bin/env node
// Prints the component types of a tokenizer.json (and the relevant tokenizer_config.json
// fields) so the C++ implementation knows which pieces each reference tokenizer uses.
// Usage: node summarize.js TOKENIZER_DIR
'use strict';
const fs = require('fs');
const path = require('path');

function describe(node, indent) {
  if (node === null || node === undefined) return indent + 'null\n';
  let out = indent + node.type;
  const extra = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === 'type') continue;
    if (k === 'normalizers' || k === 'pretokenizers' || k === 'decoders' || k === 'processors') continue;
    if (k === 'vocab' || k === 'merges') continue;
    if (k === 'single' || k === 'pair' || k === 'special_tokens') { extra[k] = v; continue; }
    extra[k] = v;
  }
  if (Object.keys(extra).length) out += ' ' + JSON.stringify(extra);
  out += '\n';
  for (const k of ['normalizers', 'pretokenizers', 'decoders', 'processors']) {
    if (Array.isArray(node[k])) for (const c of node[k]) out += describe(c, indent + '  ');
  }
  return out;
}

const dir = process.argv[2];
const tj = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
let cfg = {};
try { cfg = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')); } catch (e) { /* none */ }
const m = tj.model;
const vocabSize = Array.isArray(m.vocab) ? m.vocab.length : Object.keys(m.vocab || {}).length;
let mergesFmt = 'none';
if (Array.isArray(m.merges) && m.merges.length) mergesFmt = typeof m.merges[0] === 'string' ? '"a b" strings' : '[a,b] pairs';
const flags = {};
for (const [k, v] of Object.entries(m)) if (k !== 'vocab' && k !== 'merges' && k !== 'type') flags[k] = v;
console.log('model: ' + m.type + ' vocab=' + vocabSize + ' merges=' + (m.merges ? m.merges.length : 0) + ' (' + mergesFmt + ') ' + JSON.stringify(flags));
console.log('truncation: ' + JSON.stringify(tj.truncation) + ' padding: ' + JSON.stringify(tj.padding));
console.log('normalizer:\n' + describe(tj.normalizer, '  ').trimEnd());
console.log('pre_tokenizer:\n' + describe(tj.pre_tokenizer, '  ').trimEnd());
console.log('post_processor:\n' + describe(tj.post_processor, '  ').trimEnd());
console.log('decoder:\n' + describe(tj.decoder, '  ').trimEnd());
const at = tj.added_tokens || [];
const groups = new Map();
for (const t of at) {
  const key = JSON.stringify({ special: t.special, normalized: t.normalized, lstrip: t.lstrip, rstrip: t.rstrip, single_word: t.single_word });
  if (!groups.has(key)) groups.set(key, []);
  groups.get(key).push(t);
}
console.log('added_tokens: ' + at.length);
for (const [k, ts] of groups) {
  const ex = ts.slice(0, 4).map(t => JSON.stringify(t.content) + '=' + t.id).join(', ');
  console.log('  ' + ts.length + ' x ' + k + '  e.g. ' + ex);
}
const inVocab = at.filter(t => (Array.isArray(m.vocab) ? false : Object.prototype.hasOwnProperty.call(m.vocab, t.content))).length;
console.log('  added tokens also in model vocab: ' + inVocab);
const pick = ['tokenizer_class', 'add_bos_token', 'add_eos_token', 'bos_token', 'eos_token', 'unk_token', 'pad_token',
  'clean_up_tokenization_spaces', 'legacy', 'add_prefix_space', 'spaces_between_special_tokens', 'model_max_length'];
const c = {};
for (const k of pick) if (k in cfg) c[k] = cfg[k];
console.log('tokenizer_config: ' + JSON.stringify(c));
console.log('chat_template: ' + (cfg.chat_template ? (typeof cfg.chat_template === 'string' ? cfg.chat_template.length + ' chars' : 'list of ' + cfg.chat_template.length) : 'absent'));
