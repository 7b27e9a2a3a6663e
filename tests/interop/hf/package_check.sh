#!/usr/bin/env bash
# slmops convert HF_DIR --package genai|foundry-local (issue #14) on the checkpoints of
# tests/fixtures/hf: every deployment folder is checked the way its consumers read it.
#  - genai_config.json against genai_schema.json (the keys and types ONNX Runtime GenAI's
#    config parser accepts), its values against config.json / generation_config.json (with
#    transformers' and GenAI's defaults where a key is absent) and reference.json's effective
#    head_dim / kv heads, and its I/O names against model.onnx as onnxruntime-node opens it;
#  - the model runs in onnxruntime-node: prefill logits equal expected.npz within 1e-4;
#  - manifest.json: every file of the folder listed once, bytes = file size, sha256 = sha256sum,
#    slmops_version = `slmops --version`;
#  - foundry-local: inference_model.json's Name is --name, and PromptTemplate.prompt is the chat
#    template rendered for one user turn "{Content}" with add_generation_prompt, by
#    `slmops tokenize --chat` and by Python's jinja2 set up as transformers
#    (tests/interop/chat_templates/render_jinja2.py, when /usr/bin/python3 has jinja2); the
#    system / user / assistant entries, when present, must hold {Content} once and equal that
#    turn rendered alone; the weights (model.onnx.data) equal the genai package's;
#  - transformers.js 4.3.2 (transformersjs_generate.js) loads the folder and its 32 greedy tokens
#    from expected.npz's prompt equal `slmops generate` on the same folder, and the reference's
#    (phi3_longrope: greedy_ids_kv_cache_kept, as both decode with a kept KV cache).
# About 40 s on two shared cores (16 conversions, 16 transformers.js and onnxruntime-node runs).
# Usage: package_check.sh SLMOPS_BINARY SOURCE_DIR
set -u
S=$1
SRC=$2
HF=$SRC/tests/fixtures/hf
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-pkg-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
# shellcheck source=../../cli/testlib.sh
. "$SRC/tests/cli/testlib.sh"  # check NAME COMMAND..., finish
# check_out NAME CMD...: like check, and prints the command's output (its findings) indented.
check_out() {
  local name=$1 out rc
  shift
  out=$("$@" 2>&1)
  rc=$?
  [ -n "$out" ] && echo "$out" | head -20 | sed 's/^/     /'
  check "$name" [ "$rc" -eq 0 ]
}

# ---- the checks that read JSON and ONNX run in node (no npm package beyond tests/interop's) ----
cat > "$WORK/pkg.js" <<'EOF'
const fs = require('fs');
const path = require('path');
const [mode, ...args] = process.argv.slice(2);
const HERE = process.env.PKG_HERE;
const readJson = (p) => JSON.parse(fs.readFileSync(p, 'utf8'));
const errors = [];
const fail = (msg) => errors.push(msg);
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const show = (v) => JSON.stringify(v);
function done() {
  for (const e of errors) console.log(e);
  process.exit(errors.length ? 1 : 0);
}

// A JSON-schema subset: type, properties, required, additionalProperties (bool or schema),
// items, minItems, enum, const, minimum, maximum, exclusiveMinimum, pattern, anyOf. A keyword it
// does not know is an error, so a typo in the schema cannot pass silently.
const KNOWN = new Set(['$schema', '$comment', 'title', 'description', 'type', 'properties', 'required',
  'additionalProperties', 'items', 'minItems', 'enum', 'const', 'minimum', 'maximum', 'exclusiveMinimum',
  'pattern', 'anyOf']);
function typeOk(t, v) {
  switch (t) {
    case 'object': return v !== null && typeof v === 'object' && !Array.isArray(v);
    case 'array': return Array.isArray(v);
    case 'string': return typeof v === 'string';
    case 'boolean': return typeof v === 'boolean';
    case 'number': return typeof v === 'number' && Number.isFinite(v);
    case 'integer': return Number.isInteger(v);
    case 'null': return v === null;
    default: throw new Error(`schema: unknown type ${t}`);
  }
}
function validate(schema, v, at, out) {
  for (const k of Object.keys(schema)) if (!KNOWN.has(k)) throw new Error(`schema: keyword ${k} at ${at} not implemented`);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => typeOk(t, v))) { out.push(`${at}: ${show(v)} is not ${types.join(' or ')}`); return; }
  }
  if (schema.anyOf) {
    const ok = schema.anyOf.some((s) => { const o = []; validate(s, v, at, o); return o.length === 0; });
    if (!ok) out.push(`${at}: ${show(v)} matches none of anyOf`);
  }
  if (schema.enum && !schema.enum.some((e) => same(e, v))) out.push(`${at}: ${show(v)} not in ${show(schema.enum)}`);
  if ('const' in schema && !same(schema.const, v)) out.push(`${at}: ${show(v)} is not ${show(schema.const)}`);
  if (typeof v === 'number') {
    if (schema.minimum !== undefined && v < schema.minimum) out.push(`${at}: ${v} < minimum ${schema.minimum}`);
    if (schema.maximum !== undefined && v > schema.maximum) out.push(`${at}: ${v} > maximum ${schema.maximum}`);
    if (schema.exclusiveMinimum !== undefined && v <= schema.exclusiveMinimum) out.push(`${at}: ${v} <= ${schema.exclusiveMinimum}`);
  }
  if (typeof v === 'string' && schema.pattern && !new RegExp(schema.pattern, 'u').test(v)) out.push(`${at}: ${show(v)} does not match /${schema.pattern}/`);
  if (Array.isArray(v)) {
    if (schema.minItems !== undefined && v.length < schema.minItems) out.push(`${at}: fewer than ${schema.minItems} items`);
    if (schema.items) v.forEach((x, i) => validate(schema.items, x, `${at}[${i}]`, out));
  }
  if (typeOk('object', v)) {
    for (const r of schema.required || []) if (!(r in v)) out.push(`${at}: required key ${r} missing`);
    const props = schema.properties || {};
    for (const [k, x] of Object.entries(v)) {
      if (k in props) validate(props[k], x, `${at}.${k}`, out);
      else if (schema.additionalProperties === false) out.push(`${at}: key ${k} not allowed`);
      else if (typeof schema.additionalProperties === 'object') validate(schema.additionalProperties, x, `${at}.${k}`, out);
    }
  }
}

async function main() {
  if (mode === 'schema') {  // schema SCHEMA.json FILE.json
    const out = [];
    validate(readJson(args[0]), readJson(args[1]), '$', out);
    out.forEach(fail);
  } else if (mode === 'schema-selftest') {  // the checker catches what it should
    const schema = readJson(args[0]);
    const good = readJson(args[1]);
    const bad = (mutate, what) => {
      const g = JSON.parse(JSON.stringify(good));
      mutate(g);
      const out = [];
      validate(schema, g, '$', out);
      if (out.length === 0) fail(`schema checker misses: ${what}`);
    };
    bad((g) => { delete g.model.decoder.head_size; }, 'missing decoder.head_size');
    bad((g) => { g.model.eos_token_id = '257'; }, 'eos_token_id a string');
    bad((g) => { g.model.eos_token_id = []; }, 'eos_token_id an empty list');
    bad((g) => { g.model.decoder.num_hidden_layers = 2.5; }, 'fractional num_hidden_layers');
    bad((g) => { g.model.type = 'llama2'; }, 'unknown model type');
    bad((g) => { g.search.top_k_typo = 5; }, 'unknown search key');
    bad((g) => { g.model.decoder.inputs.past_key_names = 'past_key_values.key'; }, 'past_key_names without %d');
    bad((g) => { g.search.do_sample = 'false'; }, 'do_sample a string');
  } else if (mode === 'values') {  // values PKG HF_DIR REFERENCE.json NAME
    const [pkg, hf, refFile, name] = args;
    const g = readJson(path.join(pkg, 'genai_config.json'));
    const cfg = readJson(path.join(hf, 'config.json'));
    // reference.json covers the random-weight checkpoints; llama_trained keeps its own
    // reference (perplexity.json): its config.json values are checked alone.
    const entry = readJson(refFile).checkpoints[name];
    const ref = entry ? entry.effective : { kv_heads: cfg.num_key_value_heads ?? cfg.num_attention_heads,
                                            head_dim: cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads };
    const m = g.model, d = m.decoder;
    const want = (what, got, exp, why) => { if (!same(got, exp)) fail(`${what} = ${show(got)}, want ${show(exp)} (${why})`); };
    const heads = cfg.num_attention_heads;
    const kv = cfg.num_key_value_heads ?? heads;
    const hd = cfg.head_dim ?? cfg.hidden_size / heads;
    want('model.type', m.type, cfg.model_type, 'config.json model_type');
    want('model.vocab_size', m.vocab_size, cfg.vocab_size, 'config.json');
    want('decoder.hidden_size', d.hidden_size, cfg.hidden_size, 'config.json');
    want('decoder.num_attention_heads', d.num_attention_heads, heads, 'config.json');
    want('decoder.num_hidden_layers', d.num_hidden_layers, cfg.num_hidden_layers, 'config.json');
    want('decoder.num_key_value_heads', d.num_key_value_heads, kv, 'config.json');
    want('decoder.num_key_value_heads', d.num_key_value_heads, ref.kv_heads, 'reference.json effective.kv_heads');
    want('decoder.head_size', d.head_size, hd, 'config.json head_dim or hidden/heads');
    want('decoder.head_size', d.head_size, ref.head_dim, 'reference.json effective.head_dim');
    want('model.context_length', m.context_length, Math.min(cfg.max_position_embeddings, 131072), 'max_position_embeddings, the default --context-length');
    want('decoder.filename', d.filename, 'model.onnx', 'the package layout');
    if (!fs.existsSync(path.join(pkg, d.filename))) fail(`decoder.filename ${d.filename} is not in the folder`);
  } else if (mode === 'search') {  // search PKG HF_DIR: token ids and search vs generation_config.json
    const [pkg, hf] = args;
    const g = readJson(path.join(pkg, 'genai_config.json'));
    const cfg = readJson(path.join(hf, 'config.json'));
    const genFile = path.join(hf, 'generation_config.json');
    const gen = fs.existsSync(genFile) ? readJson(genFile) : {};
    const want = (what, got, exp, why) => { if (!same(got, exp)) fail(`${what} = ${show(got)}, want ${show(exp)} (${why})`); };
    const pick = (k) => (gen[k] ?? cfg[k] ?? null);
    const eos = pick('eos_token_id');
    want('model.bos_token_id', g.model.bos_token_id, pick('bos_token_id'), 'generation_config.json, else config.json');
    want('model.eos_token_id', g.model.eos_token_id, eos, 'generation_config.json, else config.json');
    want('model.pad_token_id', g.model.pad_token_id, pick('pad_token_id') ?? (Array.isArray(eos) ? eos[0] : eos), 'pad_token_id, else the first eos');
    // transformers' GenerationConfig defaults (v4.57: do_sample False, temperature 1.0, top_k 50,
    // top_p 1.0, repetition_penalty 1.0, num_beams 1, ...), which GenAI's builder also uses
    // (genai_config_utils._GENAI_SEARCH_DEFAULTS) when generation_config.json has no value.
    const defaults = { do_sample: false, temperature: 1.0, top_k: 50, top_p: 1.0, repetition_penalty: 1.0, num_beams: 1,
                       num_return_sequences: 1, min_length: 0, no_repeat_ngram_size: 0, length_penalty: 1.0, diversity_penalty: 0.0 };
    for (const [k, def] of Object.entries(defaults)) {
      const exp = gen[k] ?? def;
      want(`search.${k}`, g.search[k], exp, k in gen ? 'generation_config.json' : `not in generation_config.json: transformers' and GenAI's default ${show(def)}`);
    }
    if (g.search.do_sample && g.search.top_k === 1 && gen.top_k !== 1)
      fail(`  with do_sample true, top_k 1 makes GenAI always take the argmax: the package never samples, where transformers samples (generation_config.json: ${show(gen)})`);
    want('search.max_length', g.search.max_length, g.model.context_length, 'model.context_length');
  } else if (mode === 'ort') {  // ort PKG EXPECTED.npz TOL: I/O names, KV shapes, prefill logits
    const [pkg, npzFile, tolArg] = args;
    const ort = require(path.join(HERE, '..', 'node_modules', 'onnxruntime-node'));
    const { readNpz } = require(path.join(HERE, 'npz.js'));
    const g = readJson(path.join(pkg, 'genai_config.json'));
    const d = g.model.decoder, io = d.inputs, oo = d.outputs;
    const s = await ort.InferenceSession.create(path.join(pkg, d.filename));
    const L = d.num_hidden_layers;
    const fmt = (p, i) => p.replace('%d', String(i));
    const wantIn = [io.input_ids, io.attention_mask, io.position_ids];
    const wantOut = [oo.logits];
    for (let i = 0; i < L; ++i) {
      wantIn.push(fmt(io.past_key_names, i), fmt(io.past_value_names, i));
      wantOut.push(fmt(oo.present_key_names, i), fmt(oo.present_value_names, i));
    }
    for (const n of wantIn) if (!s.inputNames.includes(n)) fail(`genai_config input ${n} is not an input of model.onnx`);
    for (const n of s.inputNames) if (!wantIn.includes(n)) fail(`model.onnx input ${n} is not fed by genai_config's names`);
    for (const n of wantOut) if (!s.outputNames.includes(n)) fail(`genai_config output ${n} is not an output of model.onnx`);
    const meta = (n) => (s.inputMetadata || []).find((x) => x.name === n);
    for (let i = 0; i < L && errors.length === 0; ++i) {
      for (const n of [fmt(io.past_key_names, i), fmt(io.past_value_names, i)]) {
        const mm = meta(n);
        if (!mm || !mm.shape) continue;
        if (mm.shape.length !== 4) fail(`${n}: rank ${mm.shape.length}, want 4`);
        else {
          if (typeof mm.shape[1] === 'number' && mm.shape[1] !== d.num_key_value_heads) fail(`${n}: dim 1 = ${mm.shape[1]}, want num_key_value_heads ${d.num_key_value_heads}`);
          if (typeof mm.shape[3] === 'number' && mm.shape[3] !== d.head_size) fail(`${n}: dim 3 = ${mm.shape[3]}, want head_size ${d.head_size}`);
        }
      }
    }
    if (errors.length) return done();
    const ref = readNpz(npzFile);
    const ids = Array.from(ref.input_ids.data, Number);
    const T = ids.length;
    const i64 = (a, dims) => new ort.Tensor('int64', BigInt64Array.from(a.map(BigInt)), dims);
    const feeds = { [io.input_ids]: i64(ids, [1, T]), [io.attention_mask]: i64(ids.map(() => 1), [1, T]),
                    [io.position_ids]: i64(ids.map((_, k) => k), [1, T]) };
    for (let i = 0; i < L; ++i)
      for (const p of [io.past_key_names, io.past_value_names])
        feeds[fmt(p, i)] = new ort.Tensor('float32', new Float32Array(0), [1, d.num_key_value_heads, 0, d.head_size]);
    const out = await s.run(feeds);
    const lg = out[oo.logits];
    if (!same(lg.dims, [1, T, g.model.vocab_size])) fail(`logits dims ${show(lg.dims)}, want [1,${T},${g.model.vocab_size}]`);
    const pk = out[fmt(oo.present_key_names, 0)];
    if (!same(pk.dims, [1, d.num_key_value_heads, T, d.head_size])) fail(`${fmt(oo.present_key_names, 0)} dims ${show(pk.dims)}, want [1,${d.num_key_value_heads},${T},${d.head_size}]`);
    let diff = 0, finite = true;
    for (let k = 0; k < lg.data.length; ++k) {
      if (!Number.isFinite(lg.data[k])) finite = false;
      diff = Math.max(diff, Math.abs(lg.data[k] - ref.logits.data[k]));
    }
    if (!finite) fail('logits are not finite');
    if (!(diff <= Number(tolArg))) fail(`prefill logits differ from expected.npz by ${diff} > ${tolArg}`);
    console.log(`prefill max |logits - reference| = ${diff.toExponential(2)}; inputs ${s.inputNames.length}, outputs ${s.outputNames.length}`);
  } else if (mode === 'manifest') {  // manifest PKG FLAVOR VERSION SHA256SUMS SIZES CONFIG.json
    const [pkg, flavor, version, shaFile, sizeFile, cfgFile] = args;
    const man = readJson(path.join(pkg, 'manifest.json'));
    const sums = new Map(fs.readFileSync(shaFile, 'utf8').trim().split('\n').map((l) => { const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(l); return [m[2], m[1]]; }));
    const sizes = new Map(fs.readFileSync(sizeFile, 'utf8').trim().split('\n').map((l) => { const m = /^(\d+) (.+)$/.exec(l); return [m[2], Number(m[1])]; }));
    const want = (what, got, exp) => { if (!same(got, exp)) fail(`manifest ${what} = ${show(got)}, want ${show(exp)}`); };
    want('format', man.format, 'slmops-package');
    want('flavor', man.flavor, flavor);
    want('slmops_version', man.slmops_version, version);
    want('model', man.model, 'model.onnx');
    want('architecture', man.architecture, readJson(cfgFile).architectures[0]);
    if (!Array.isArray(man.files)) { fail('manifest files is not a list'); return done(); }
    const listed = new Set();
    for (const f of man.files) {
      if (listed.has(f.path)) fail(`manifest lists ${f.path} twice`);
      listed.add(f.path);
      if (f.path.includes('/') || f.path.startsWith('.')) fail(`manifest path ${f.path} is not a plain file name`);
      if (!sums.has(f.path)) { fail(`manifest lists ${f.path}, which is not in the folder`); continue; }
      if (f.sha256 !== sums.get(f.path)) fail(`${f.path}: manifest sha256 ${f.sha256}, sha256sum ${sums.get(f.path)}`);
      if (f.bytes !== sizes.get(f.path)) fail(`${f.path}: manifest bytes ${f.bytes}, file size ${sizes.get(f.path)}`);
    }
    const onDisk = fs.readdirSync(pkg);
    for (const n of onDisk) {
      if (n === 'manifest.json') continue;
      if (!fs.statSync(path.join(pkg, n)).isFile()) fail(`${n} in the folder is not a plain file`);
      else if (!listed.has(n)) fail(`${n} is in the folder but not in manifest.json`);
    }
    if (listed.has('manifest.json')) fail('manifest.json lists itself');
    const need = ['model.onnx', 'model.onnx.data', 'genai_config.json', 'tokenizer.json', 'tokenizer_config.json', 'config.json', 'generation_config.json'];
    if (flavor === 'foundry-local') need.push('inference_model.json');
    for (const n of need) if (!onDisk.includes(n)) fail(`${n} is missing from the ${flavor} package`);
    if (flavor === 'genai' && onDisk.includes('inference_model.json')) fail('a genai package has inference_model.json');
  } else if (mode === 'inference' || mode === 'inference-turns') {  // inference[-turns] PKG NAME ORACLE_DIR
    const [pkg, name, odir] = args;
    const inf = readJson(path.join(pkg, 'inference_model.json'));
    const want = (what, got, exp) => { if (!same(got, exp)) fail(`inference_model.json ${what} = ${show(got)}, want ${show(exp)}`); };
    const pt = inf.PromptTemplate;
    if (!pt || typeof pt !== 'object') { fail('inference_model.json has no PromptTemplate object'); return done(); }
    // The oracles: ORACLE_DIR/<renderer>.<case>.{out,rc}; renderer slmops (slmops tokenize --chat)
    // and jinja2 (render_jinja2.py; absent when /usr/bin/python3 has no jinja2). Cases: prompt =
    // [user {Content}] + generation prompt; system / user = that one turn alone; assistant = what
    // [user {User}, assistant {Content}] adds to [user {User}] (when the first starts with the second).
    const renderers = ['slmops', 'jinja2'].filter((r) => fs.existsSync(path.join(odir, `${r}.prompt.rc`)));
    const get = (r, c) => {
      const rc = Number(fs.readFileSync(path.join(odir, `${r}.${c}.rc`), 'utf8').trim());
      return rc === 0 ? fs.readFileSync(path.join(odir, `${r}.${c}.out`), 'utf8') : null;
    };
    const expectFor = (r) => {
      const before = get(r, 'before'), both = get(r, 'both');
      return { prompt: get(r, 'prompt'), system: get(r, 'system'), user: get(r, 'user'),
               assistant: before !== null && both !== null && both.startsWith(before) ? both.slice(before.length) : null };
    };
    const exps = renderers.map(expectFor);
    const keys = mode === 'inference' ? ['prompt'] : ['system', 'user', 'assistant'];
    for (let i = 1; i < exps.length; ++i)
      for (const k of keys)
        if (!same(exps[i][k], exps[0][k])) fail(`oracles disagree on ${k}: slmops tokenize --chat ${show(exps[0][k])}, jinja2 ${show(exps[i][k])}`);
    const exp = exps[0];
    if (mode === 'inference') {
      want('Name', inf.Name, name);
      for (const k of Object.keys(inf)) if (!['Name', 'PromptTemplate'].includes(k)) fail(`inference_model.json: unexpected key ${k}`);
      for (const k of Object.keys(pt)) if (!['system', 'user', 'assistant', 'prompt'].includes(k)) fail(`PromptTemplate: unexpected key ${k}`);
      if (exp.prompt === null) fail('the oracle cannot render one user turn');
      want('PromptTemplate.prompt', pt.prompt, exp.prompt);
      console.log(`oracles: ${renderers.join(' + ')}; PromptTemplate keys: ${Object.keys(pt).join(', ')}`);
    } else {
      for (const k of keys) {
        if (!(k in pt)) continue;
        if (typeof pt[k] !== 'string' || pt[k].split('{Content}').length !== 2)
          fail(`PromptTemplate.${k} = ${show(pt[k])} does not hold {Content} exactly once (the ${k} message would be lost)`);
        else if (exp[k] === null) fail(`PromptTemplate.${k} = ${show(pt[k])}, but the template renders no such turn`);
        else want(`PromptTemplate.${k}`, pt[k], exp[k]);
      }
    }
  } else if (mode === 'npz-ids') {  // npz-ids EXPECTED.npz KEY
    const { readNpz } = require(path.join(HERE, 'npz.js'));
    const r = readNpz(args[0]);
    if (!r[args[1]]) { console.log(''); return; }
    console.log(Array.from(r[args[1]].data).join(','));
  } else if (mode === 'json-ids') {  // json-ids FILE: generated_ids of a JSON output, or nothing
    try { console.log(readJson(args[0]).generated_ids.join(',')); } catch (e) { console.log(''); }
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  done();
}
main().catch((e) => { console.log(`error: ${e.message.split('\n')[0]}`); process.exit(2); });
EOF
pkg() { PKG_HERE=$HERE node "$WORK/pkg.js" "$@"; }

VERSION=$("$S" --version | awk '{print $2}')
HAVE_JINJA2=0
/usr/bin/python3 -c 'import jinja2' 2> /dev/null && HAVE_JINJA2=1
[ "$HAVE_JINJA2" = 1 ] || echo "     (no jinja2 in /usr/bin/python3: PromptTemplate is checked against slmops tokenize --chat only)"
printf '[{"role": "user", "content": "{Content}"}]' > "$WORK/chat.prompt.json"
cp "$WORK/chat.prompt.json" "$WORK/chat.user.json"
printf '[{"role": "system", "content": "{Content}"}]' > "$WORK/chat.system.json"
printf '[{"role": "user", "content": "{User}"}]' > "$WORK/chat.before.json"
printf '[{"role": "user", "content": "{User}"}, {"role": "assistant", "content": "{Content}"}]' > "$WORK/chat.both.json"

schema_tested=0
for dir in "$HF"/*/; do
  f=$(basename "$dir")
  [ -f "$dir/expected.npz" ] || continue
  npz=$dir/expected.npz
  ids=$(pkg npz-ids "$npz" input_ids)
  ref_ids=$(pkg npz-ids "$npz" greedy_ids)
  # longrope: a KV-cached decoder keeps the short-factor keys past 32 positions (see
  # tests/fixtures/hf/README.md); its tokens are the reference's kept-cache run.
  [ "$f" = phi3_longrope ] && ref_ids=$(pkg npz-ids "$npz" greedy_ids_kv_cache_kept)

  # The chat template oracles for inference_model.json (once per checkpoint).
  odir=$WORK/$f.oracle
  mkdir -p "$odir"
  for c in prompt user system before both; do
    agp=
    [ "$c" = prompt ] && agp=--add-generation-prompt
    "$S" -q tokenize --tokenizer "$dir" --chat - $agp < "$WORK/chat.$c.json" > "$odir/slmops.$c.out" 2> /dev/null
    echo $? > "$odir/slmops.$c.rc"
    if [ "$HAVE_JINJA2" = 1 ]; then
      /usr/bin/python3 "$SRC/tests/interop/chat_templates/render_jinja2.py" --tokenizer "$dir" --chat "$WORK/chat.$c.json" $agp \
        > "$odir/jinja2.$c.out" 2> /dev/null
      echo $? > "$odir/jinja2.$c.rc"
    fi
  done

  for flavor in genai foundry-local; do
    out=$WORK/$f.$flavor
    t=$f/$flavor
    args=(--package "$flavor")
    [ "$flavor" = foundry-local ] && args+=(--name "tiny-$f")
    if ! "$S" -q convert "$dir" -o "$out" "${args[@]}" > /dev/null 2> "$WORK/$f.$flavor.err"; then
      check "$t: convert ($(head -c 300 "$WORK/$f.$flavor.err"))" false
      continue
    fi
    if [ "$schema_tested" = 0 ]; then
      check_out "schema checker self-test: it rejects eight broken variants of $t's genai_config.json" \
        pkg schema-selftest "$HERE/genai_schema.json" "$out/genai_config.json"
      schema_tested=1
    fi
    check_out "$t: genai_config.json conforms to genai_schema.json" pkg schema "$HERE/genai_schema.json" "$out/genai_config.json"
    check_out "$t: genai_config.json model/decoder agree with config.json and reference.json (heads, layers, kv heads, head_dim, vocab, type, context)" \
      pkg values "$out" "$dir" "$HF/reference.json" "$f"
    check_out "$t: genai_config.json token ids and search agree with generation_config.json (transformers' defaults where absent)" \
      pkg search "$out" "$dir"
    check_out "$t: onnxruntime-node runs model.onnx with genai_config's I/O names; prefill logits = reference (1e-4)" \
      pkg ort "$out" "$npz" 1e-4
    (cd "$out" && sha256sum -- *) > "$WORK/$f.$flavor.sha"
    (cd "$out" && stat -c '%s %n' -- *) > "$WORK/$f.$flavor.size"
    check_out "$t: manifest.json lists every file with its bytes and sha256sum, and slmops $VERSION" \
      pkg manifest "$out" "$flavor" "$VERSION" "$WORK/$f.$flavor.sha" "$WORK/$f.$flavor.size" "$dir/config.json"
    for n in config.json generation_config.json tokenizer.json tokenizer_config.json; do
      cmp -s "$dir/$n" "$out/$n" || { echo "     $n differs from the checkpoint's"; touch "$WORK/$f.$flavor.copydiff"; }
    done
    check "$t: config.json, generation_config.json and the tokenizer files are the checkpoint's, byte for byte" \
      [ ! -e "$WORK/$f.$flavor.copydiff" ]
    if [ "$flavor" = foundry-local ]; then
      check_out "$t: inference_model.json Name is tiny-$f, PromptTemplate.prompt = the chat template for one user turn + generation prompt" \
        pkg inference "$out" "tiny-$f" "$odir"
      check_out "$t: PromptTemplate system/user/assistant (those present) hold {Content} once and equal that turn rendered alone" \
        pkg inference-turns "$out" "tiny-$f" "$odir"
      # model.onnx itself differs: its metadata records the recipe, --package and --name included.
      check "$t: model.onnx.data (the weights) is the genai package's, byte for byte" \
        cmp -s <(grep ' model\.onnx\.data$' "$WORK/$f.genai.sha") <(grep ' model\.onnx\.data$' "$WORK/$f.$flavor.sha")
    fi
    # transformers.js and slmops generate on the same folder, 32 greedy tokens.
    node "$HERE/transformersjs_generate.js" "$out" "$ids" 32 > "$WORK/$f.$flavor.tjs.json" 2> "$WORK/$f.$flavor.tjs.err"
    tjs=$(pkg json-ids "$WORK/$f.$flavor.tjs.json")
    if [ -z "$tjs" ]; then
      check "$t: transformers.js loads and runs the folder ($(head -c 300 "$WORK/$f.$flavor.tjs.json") $(head -c 200 "$WORK/$f.$flavor.tjs.err"))" false
      continue
    fi
    "$S" -q generate "$out" --input-ids "$ids" --max-new-tokens 32 --ignore-eos --json > "$WORK/$f.$flavor.gen.json" 2> "$WORK/$f.$flavor.gen.err"
    gen=$(pkg json-ids "$WORK/$f.$flavor.gen.json")
    [ "$tjs" = "$gen" ] || echo "     transformers.js: $tjs"$'\n'"     slmops generate: $gen $(head -c 200 "$WORK/$f.$flavor.gen.err")"
    check "$t: transformers.js greedy (32 tokens) = slmops generate on the folder" [ -n "$gen" -a "$tjs" = "$gen" ]
    [ "$tjs" = "$ref_ids" ] || echo "     reference: $ref_ids"
    check "$t: transformers.js greedy = the reference's tokens (expected.npz)" [ "$tjs" = "$ref_ids" ]
  done
done
echo "     runtime $(($(date +%s) - START)) s"
finish
