// Greedy generation with transformers.js (@huggingface/transformers 4.3.2 in tests/interop/node_modules)
// on a folder written by `slmops convert HF_DIR --package genai|foundry-local` (issue #14):
// model.onnx at the folder root, its weights in model.onnx.data, plus config.json,
// generation_config.json and the tokenizer files. Local files only: nothing is downloaded.
//
// Usage: node transformersjs_generate.js PACKAGE_DIR IDS [MAX_NEW_TOKENS]
//   IDS: the prompt as comma-separated token ids (batch 1, no padding). MAX_NEW_TOKENS: default 32.
// Prints one JSON line: {"generated_ids": [...], "model_type", "class", "load_options"}.
// Exit code 2 with {"error": ...} on stdout when the folder cannot be loaded or run.
//
// How the folder is loaded (read from the library's source, src/models/modeling_utils.js,
// src/models/session.js, src/utils/model-loader.js, src/utils/hub.js):
//   - env.allowRemoteModels = false, env.allowLocalModels = true, env.useFSCache = false, and the
//     folder is passed as an absolute path (an absolute path is not an HF model id, so hub.js uses
//     it as it is instead of joining it to env.localModelPath, which is set to '/' anyway);
//   - subfolder: '' (the default 'onnx' looks for onnx/model.onnx), model_file_name: 'model',
//     dtype: 'fp32' (suffix '': model.onnx; 'q8' etc. would add _quantized/_q4...), device: 'cpu';
//   - use_external_data_format: false. transformers.js names external data `<file>.onnx_data`
//     (getExternalDataChunkNames), not `model.onnx.data`; `true` makes it look for model.onnx_data
//     and fail. In Node it passes the model *path* to onnxruntime-node, which reads the external
//     data file named in the model's tensors (model.onnx.data, next to model.onnx) by itself.
// Greedy decoding: do_sample false, num_beams 1, and the sampling / penalty settings of the
// folder's generation_config.json neutralised (Qwen2's has repetition_penalty 1.05, which
// transformers.js applies even without sampling). EOS is ignored like `slmops generate
// --ignore-eos`: eos_token_id null in the generate() kwargs (they override generation_config.json
// and config.json in _prepare_generation_config), so there is no EosTokenCriteria and exactly
// max_new_tokens come out, EOS ids included. min_new_tokens = max_new_tokens is NOT equivalent:
// its MinNewTokensLengthLogitsProcessor sets the EOS logits to -inf, so where the argmax is an EOS
// id another token is picked (phi3_longrope's cached run picks 261 <|end|> at step 19).
const path = require('path');

async function main() {
  const [dirArg, idsArg, maxArg] = process.argv.slice(2);
  if (!dirArg || !idsArg) {
    console.error('usage: node transformersjs_generate.js PACKAGE_DIR IDS [MAX_NEW_TOKENS]');
    process.exit(1);
  }
  const dir = path.resolve(dirArg);
  const ids = idsArg.split(',').map((s) => Number(s.trim()));
  const maxNew = Number(maxArg ?? 32);
  const tf = require(path.join(__dirname, '..', 'node_modules', '@huggingface', 'transformers'));
  const { env, AutoConfig, AutoModelForCausalLM, Tensor } = tf;
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useFSCache = false;
  env.useBrowserCache = false;
  env.localModelPath = '/';
  const loadOptions = {
    subfolder: '',
    model_file_name: 'model',
    use_external_data_format: false,
    dtype: 'fp32',
    device: 'cpu',
    local_files_only: true,
  };
  let modelType = null;
  let cls = null;
  try {
    const config = await AutoConfig.from_pretrained(dir, { local_files_only: true });
    modelType = config.model_type;
    const model = await AutoModelForCausalLM.from_pretrained(dir, { ...loadOptions, config });
    cls = model.constructor.name;
    const L = ids.length;
    const input_ids = new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, L]);
    const attention_mask = new Tensor('int64', new BigInt64Array(L).fill(1n), [1, L]);
    const out = await model.generate({
      input_ids,
      attention_mask,
      max_new_tokens: maxNew,
      eos_token_id: null,
      do_sample: false,
      num_beams: 1,
      temperature: 1.0,
      top_k: 0,
      top_p: 1.0,
      repetition_penalty: 1.0,
      no_repeat_ngram_size: 0,
    });
    const seq = out.sequences ?? out;
    const all = Array.from(seq.data, Number);
    const generated = all.slice(L);
    console.log(JSON.stringify({ generated_ids: generated, model_type: modelType, class: cls, load_options: loadOptions }));
    if (model.dispose) await model.dispose();
  } catch (e) {
    console.log(JSON.stringify({ error: String(e && e.message ? e.message : e).split('\n')[0].slice(0, 400),
                                 model_type: modelType, class: cls }));
    process.exit(2);
  }
}
main();
