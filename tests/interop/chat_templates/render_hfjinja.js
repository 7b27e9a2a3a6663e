#!/usr/bin/env node
// Second and third chat-template oracles, both from Hugging Face's JavaScript libraries:
//   jinja         @huggingface/jinja (the standalone package, version pinned in ../package.json)
//                 given the same context as render_jinja2.py gives Python's jinja2 (transformers'
//                 special tokens, tools, documents=null, add_generation_prompt, --var values)
//   transformers  @huggingface/transformers' PreTrainedTokenizer.apply_chat_template(messages,
//                 {tokenize: false, add_generation_prompt, tools, ...vars}) on the tokenizer
//                 loaded from the local folder (no network). transformers.js bundles its own copy
//                 of @huggingface/jinja (see README.md) and passes only the seven named special
//                 tokens. Its tokenizers do not read chat_template.jinja, so when the folder has
//                 one it is passed as the `chat_template` option.
//   ids           apply_chat_template(..., {tokenize: true}): the rendered text encoded without
//                 adding special tokens; ids separated by single spaces, one line + "\n".
//
// Usage:
//   node render_hfjinja.js jinja|transformers|ids --tokenizer DIR --chat MESSAGES.json
//        [--add-generation-prompt] [--tools TOOLS.json] [--var NAME=JSON]...
//     the text on stdout exactly (ids: the ids line). MESSAGES.json "-" is stdin.
//   node render_hfjinja.js encode --tokenizer DIR TEXT_FILE
//     the ids of the text in TEXT_FILE ("-": stdin) encoded without adding special tokens, as
//     apply_chat_template(tokenize: true) encodes the rendered text (fake_slmops.sh --ids).
//   node render_hfjinja.js --batch CASES.tsv OUTDIR [--ids-for LIST]
//     CASES.tsv as render_jinja2.py --batch takes it; writes OUTDIR/ID.hfjinja.{out,err,rc} and
//     OUTDIR/ID.tjs.{out,err,rc}. LIST has lines "ID<TAB>TEXT_FILE" (TEXT_FILE: the reference
//     rendering, i.e. render_jinja2.py's): for each, OUTDIR/ID.ids gets the ids of that text
//     encoded by the case's tokenizer without adding special tokens (what
//     apply_chat_template(tokenize=True) returns), and when transformers.js rendered the same
//     text, its own apply_chat_template(tokenize: true) ids must be the same (otherwise
//     OUTDIR/ID.ids.note says so). Each tokenizer folder is loaded once.
// Exit codes: 0 rendered; 2 (jinja only) the template called raise_exception(msg): msg on
// stderr; 3 any other rendering error (transformers.js: every rendering error, raise_exception
// included, since its bundled engine cannot be told apart): the message on stderr; 1 usage.
'use strict';
const fs = require('fs');
const path = require('path');

const jinja = require('@huggingface/jinja');

class UsageError extends Error {}

// Tag errors thrown by @huggingface/jinja's raise_exception global: Template.render() sets it
// through Environment.prototype.set, so wrap it there.
const origSet = jinja.Environment.prototype.set;
jinja.Environment.prototype.set = function set(name, value) {
  if (name === 'raise_exception' && typeof value === 'function') {
    const inner = value;
    value = (...args) => {
      try {
        return inner(...args);
      } catch (e) {
        if (e && typeof e === 'object') e.raisedByTemplate = true;
        throw e;
      }
    };
  }
  return origSet.call(this, name, value);
};

function readJson(file, what) {
  let data;
  try {
    data = file === '-' ? fs.readFileSync(0) : fs.readFileSync(file);
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${file}: ${e.message}`);
  }
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${file}: ${e.message}`);
  }
}

const NAMED = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

function tokenString(v) {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof v.content === 'string') return v.content;
  throw new UsageError('special token is neither a string nor an AddedToken: ' + JSON.stringify(v));
}

// Same map as render_jinja2.py's special_tokens_map (transformers 4.x).
function pythonSpecialTokens(config) {
  const out = {};
  for (const k of NAMED) {
    if (config[k] !== undefined && config[k] !== null) {
      const s = tokenString(config[k]);
      if (s) out[k] = s;
    }
  }
  const extra = config.extra_special_tokens;
  if (extra && typeof extra === 'object' && !Array.isArray(extra)) {
    for (const [k, v] of Object.entries(extra)) {
      if (v !== null && v !== undefined) {
        const s = tokenString(v);
        if (s) out[k] = s;
      }
    }
  }
  const add = config.additional_special_tokens;
  if (Array.isArray(add) && add.length) out.additional_special_tokens = add.map(tokenString);
  return out;
}

// As render_jinja2.py's load_tokenizer_dir: {config, templates, jinjaFile}.
function loadDir(dir) {
  const cfgPath = path.join(dir, 'tokenizer_config.json');
  const config = fs.existsSync(cfgPath) ? readJson(cfgPath, 'tokenizer config') : {};
  let templates = config.chat_template ?? null;
  if (Array.isArray(templates)) {
    const d = {};
    for (const t of templates) d[t.name] = t.template;
    templates = d;
  }
  const jf = path.join(dir, 'chat_template.jinja');
  let jinjaFile = null;
  if (fs.existsSync(jf)) {
    jinjaFile = fs.readFileSync(jf, 'utf8');
    templates = jinjaFile;
  }
  const extraDir = path.join(dir, 'additional_chat_templates');
  if (fs.existsSync(extraDir)) {
    const names = fs.readdirSync(extraDir).filter((n) => n.endsWith('.jinja')).sort();
    if (names.length) {
      if (typeof templates === 'string') templates = { default: templates };
      else if (templates === null) templates = {};
      for (const n of names) templates[n.slice(0, -6)] = fs.readFileSync(path.join(extraDir, n), 'utf8');
    }
  }
  return { config, templates, jinjaFile };
}

function selectTemplate(templates, tools) {
  if (templates && typeof templates === 'object') {
    if (tools !== null && Object.hasOwn(templates, 'tool_use')) return templates.tool_use;
    if (Object.hasOwn(templates, 'default')) return templates.default;
    throw new UsageError('multiple chat templates and no default: ' + Object.keys(templates).sort().join(', '));
  }
  if (typeof templates !== 'string') throw new UsageError('tokenizer has no chat_template');
  return templates;
}

function parseVars(list) {
  const out = {};
  for (const v of list) {
    const i = v.indexOf('=');
    if (i <= 0) throw new UsageError('--var wants NAME=JSON, got ' + JSON.stringify(v));
    try {
      out[v.slice(0, i)] = JSON.parse(v.slice(i + 1));
    } catch (e) {
      throw new UsageError(`--var ${v.slice(0, i)}: not JSON: ${e.message}`);
    }
  }
  return out;
}

const dirCache = new Map();
const tokCache = new Map();
const compiled = new Map();

async function loadTokenizer(dir) {
  const abs = path.resolve(dir);
  if (!tokCache.has(abs)) {
    const { AutoTokenizer, env } = require('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.useBrowserCache = false;
    env.useFSCache = false;
    env.localModelPath = path.dirname(abs) + path.sep;
    tokCache.set(abs, await AutoTokenizer.from_pretrained(path.basename(abs), { local_files_only: true }));
  }
  return tokCache.get(abs);
}

function errText(e) {
  return (e && e.message !== undefined ? String(e.message) : String(e)) + '\n';
}

// Returns {rc, out, err}.
function renderJinja(c) {
  let source, ctx;
  try {
    if (!dirCache.has(c.dir)) dirCache.set(c.dir, loadDir(c.dir));
    const { config, templates } = dirCache.get(c.dir);
    const messages = readJson(c.chat, 'messages');
    const tools = c.tools === null ? null : readJson(c.tools, 'tools');
    source = selectTemplate(templates, tools);
    ctx = { messages, tools, documents: null, add_generation_prompt: c.agp, ...pythonSpecialTokens(config), ...parseVars(c.vars) };
  } catch (e) {
    if (e instanceof UsageError) return { rc: 1, out: '', err: 'render_hfjinja: ' + e.message + '\n' };
    throw e;
  }
  try {
    if (!compiled.has(source)) compiled.set(source, new jinja.Template(source));
    return { rc: 0, out: compiled.get(source).render(ctx), err: '' };
  } catch (e) {
    if (e && e.raisedByTemplate) return { rc: 2, out: '', err: errText(e) };
    return { rc: 3, out: '', err: 'render_hfjinja: ' + errText(e) };
  }
}

async function renderTransformers(c, wantIds) {
  let tok, messages, opts;
  try {
    if (!dirCache.has(c.dir)) dirCache.set(c.dir, loadDir(c.dir));
    const { jinjaFile } = dirCache.get(c.dir);
    messages = readJson(c.chat, 'messages');
    const tools = c.tools === null ? null : readJson(c.tools, 'tools');
    tok = await loadTokenizer(c.dir);
    opts = { add_generation_prompt: c.agp, tools, ...parseVars(c.vars) };
    if (jinjaFile !== null) opts.chat_template = jinjaFile;
  } catch (e) {
    if (e instanceof UsageError) return { rc: 1, out: '', err: 'render_hfjinja: ' + e.message + '\n' };
    throw e;
  }
  try {
    const out = tok.apply_chat_template(messages, { ...opts, tokenize: false });
    let ids = null;
    if (wantIds) {
      ids = tok.apply_chat_template(messages, { ...opts, tokenize: true, return_tensor: false, return_dict: false });
    }
    return { rc: 0, out, err: '', ids };
  } catch (e) {
    return { rc: 3, out: '', err: 'render_hfjinja (transformers.js): ' + errText(e) };
  }
}

function parseArgs(argv) {
  const c = { dir: null, chat: null, agp: false, tools: null, vars: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (['--tokenizer', '--chat', '--tools', '--var'].includes(a)) {
      if (i + 1 >= argv.length) throw new UsageError(a + ' needs a value');
      const v = argv[++i];
      if (a === '--tokenizer') c.dir = v;
      else if (a === '--chat') c.chat = v;
      else if (a === '--tools') c.tools = v;
      else c.vars.push(v);
    } else if (a === '--add-generation-prompt') {
      c.agp = true;
    } else {
      throw new UsageError('unknown argument ' + a);
    }
  }
  if (c.dir === null || c.chat === null) throw new UsageError('--tokenizer and --chat are required');
  return c;
}

function write(s) {
  return new Promise((resolve, reject) => process.stdout.write(s, (err) => (err ? reject(err) : resolve())));
}

async function batch(casesFile, outdir, idsFor) {
  fs.mkdirSync(outdir, { recursive: true });
  const wantIds = new Map();
  if (idsFor) {
    for (const l of fs.readFileSync(idsFor, 'utf8').split('\n')) {
      if (!l) continue;
      const [id, textFile] = l.split('\t');
      wantIds.set(id, textFile);
    }
  }
  for (const line of fs.readFileSync(casesFile, 'utf8').split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const f = line.split('\t');
    if (f.length < 5) throw new UsageError('bad case line: ' + JSON.stringify(line));
    const c = { id: f[0], dir: f[1], chat: f[2], agp: f[3] === '1', tools: f[4] === '-' ? null : f[4], vars: f.slice(5) };
    const base = path.join(outdir, c.id);
    const j = renderJinja(c);
    fs.writeFileSync(base + '.hfjinja.out', j.out, 'utf8');
    fs.writeFileSync(base + '.hfjinja.err', j.err, 'utf8');
    fs.writeFileSync(base + '.hfjinja.rc', j.rc + '\n');
    const t = await renderTransformers(c, wantIds.has(c.id));
    fs.writeFileSync(base + '.tjs.out', t.out, 'utf8');
    fs.writeFileSync(base + '.tjs.err', t.err, 'utf8');
    fs.writeFileSync(base + '.tjs.rc', t.rc + '\n');
    if (wantIds.has(c.id)) {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(fs.readFileSync(wantIds.get(c.id)));
      const tok = await loadTokenizer(c.dir);
      const ids = tok(text, { add_special_tokens: false, return_tensor: false }).input_ids;
      fs.writeFileSync(base + '.ids', ids.join(' ') + '\n');
      if (t.rc === 0 && t.out === text && t.ids.join(' ') !== ids.join(' ')) {
        fs.writeFileSync(base + '.ids.note', 'apply_chat_template(tokenize: true) gave other ids: ' + t.ids.join(' ') + '\n');
      }
    }
  }
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === '--batch') {
    if (argv.length !== 3 && !(argv.length === 5 && argv[3] === '--ids-for')) {
      throw new UsageError('usage: render_hfjinja.js --batch CASES.tsv OUTDIR [--ids-for FILE]');
    }
    await batch(argv[1], argv[2], argv[4]);
    return 0;
  }
  const mode = argv[0];
  if (mode === 'encode') {
    if (argv.length !== 4 || argv[1] !== '--tokenizer') throw new UsageError('usage: render_hfjinja.js encode --tokenizer DIR TEXT_FILE');
    const bytes = argv[3] === '-' ? fs.readFileSync(0) : fs.readFileSync(argv[3]);
    const tok = await loadTokenizer(argv[2]);
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    await write(tok(text, { add_special_tokens: false, return_tensor: false }).input_ids.join(' ') + '\n');
    return 0;
  }
  if (!['jinja', 'transformers', 'ids'].includes(mode)) {
    throw new UsageError('usage: render_hfjinja.js jinja|transformers|ids --tokenizer DIR --chat FILE ' +
      '[--add-generation-prompt] [--tools FILE] [--var NAME=JSON]...  |  encode --tokenizer DIR FILE  |  ' +
      '--batch CASES.tsv OUTDIR [--ids-for LIST]');
  }
  const c = parseArgs(argv.slice(1));
  const r = mode === 'jinja' ? renderJinja(c) : await renderTransformers(c, mode === 'ids');
  if (r.rc === 0) await write(mode === 'ids' ? r.ids.join(' ') + '\n' : r.out);
  if (r.err) process.stderr.write(r.err);
  return r.rc;
}

main().then(
  (rc) => { process.exitCode = rc; },
  (e) => {
    process.stderr.write('render_hfjinja: ' + (e && e.message ? e.message : String(e)) + '\n');
    process.exitCode = 1;
  },
);
