#!/usr/bin/env node
// Throughput of the reference tokenizer (transformers.js) for comparison with slmops'.
// Usage: node bench_ref.js TOKENIZER_DIR FILE... [--min-seconds S]
// Loads the tokenizer once (load time printed apart), then encodes each FILE whole, as
// ref_tokenize.js encode does, repeating until S seconds (default 2) have passed, twice:
// "cold" clears the BPE model's word cache (an LRU of 10,000 words, like HF's Rust BPE
// cache) before every encode; "warm" keeps it (after one warm-up encode). Prints one line per
// file and a total line (MB = 1e6 bytes of input):
//   FILE  BYTES bytes  TOKENS tokens  cold X MB/s  warm Y MB/s
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const args = process.argv.slice(2);
  let minSeconds = 2;
  const i = args.indexOf('--min-seconds');
  if (i >= 0) {
    minSeconds = Number(args[i + 1]);
    args.splice(i, 2);
  }
  if (args.length < 2) {
    process.stderr.write('usage: bench_ref.js TOKENIZER_DIR FILE... [--min-seconds S]\n');
    process.exit(2);
  }
  const [dir, ...files] = args;
  const abs = path.resolve(dir);
  const t0 = process.hrtime.bigint();
  const { AutoTokenizer, env } = require('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = path.dirname(abs) + path.sep;
  const tok = await AutoTokenizer.from_pretrained(path.basename(abs), { local_files_only: true });
  const loadS = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`load ${loadS.toFixed(2)} s (${path.basename(path.dirname(abs))})`);
  let totalBytes = 0;
  let totalCold = 0;
  let totalWarm = 0;
  for (const file of files) {
    const bytes = fs.readFileSync(file);
    const text = new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes);
    const model = tok._tokenizer.model;
    const time = (cold) => {
      let reps = 0;
      let busy = 0;
      const s0 = process.hrtime.bigint();
      do {
        if (cold && typeof model.clear_cache === 'function') model.clear_cache();
        const a = process.hrtime.bigint();
        tok._tokenizer.encode(text, { add_special_tokens: true });
        busy += Number(process.hrtime.bigint() - a) / 1e9;
        reps++;
      } while (Number(process.hrtime.bigint() - s0) / 1e9 < minSeconds);
      return busy / reps;
    };
    const ntok = tok._tokenizer.encode(text, { add_special_tokens: true }).ids.length;
    const coldS = time(true);
    tok._tokenizer.encode(text, { add_special_tokens: true }); // warm-up
    const warmS = time(false);
    totalBytes += bytes.length;
    totalCold += coldS;
    totalWarm += warmS;
    const mbs = (b, s) => (b / s / 1e6).toFixed(2);
    console.log(`${path.basename(file)}  ${bytes.length} bytes  ${ntok} tokens  cold ${mbs(bytes.length, coldS)} MB/s  warm ${mbs(bytes.length, warmS)} MB/s`);
  }
  if (files.length > 1) console.log(`total  ${totalBytes} bytes  cold ${(totalBytes / totalCold / 1e6).toFixed(2)} MB/s  warm ${(totalBytes / totalWarm / 1e6).toFixed(2)} MB/s`);
}

main().catch((e) => {
  process.stderr.write('bench_ref: ' + (e && e.message ? e.message : String(e)) + '\n');
  process.exit(1);
});
