#!/usr/bin/env bash
# Bad input must get: exit code 2, exactly one line on stderr naming the file/option, the
# input untouched (same bytes), and no output file (nor temporary files) left behind.
# Usage: bad_input_test.sh SLMOPS_BINARY MODEL.onnx SOURCE_DIR
set -u
SLMOPS=$1
MODEL=$2
FX=$3/tests/fixtures
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-bad-XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
cases=0
failed=0

snapshot() { (cd "$WORK" && find . -type f -o -type l | sort | xargs -r sha256sum 2>/dev/null); }

# expect_bad NAME CMD...: runs CMD in $WORK/case and checks the contract.
expect_bad() {
  local name=$1
  shift
  cases=$((cases + 1))
  local before after
  before=$(snapshot)
  local err
  err=$(cd "$WORK/case" && "$@" 2>&1 >/dev/null)
  local rc=$?
  after=$(snapshot)
  local lines
  lines=$(printf '%s' "$err" | grep -c '' || true)
  local why=""
  [ "$rc" -eq 2 ] || why="exit code $rc, expected 2"
  [ -z "$why" ] && [ "$lines" -ne 1 ] && why="$lines lines on stderr, expected 1"
  [ -z "$why" ] && [[ "$err" != "slmops: error: "* ]] && why="stderr does not start with 'slmops: error: '"
  [ -z "$why" ] && [ "$before" != "$after" ] && why="files changed: $(diff <(echo "$before") <(echo "$after") | tr '\n' ' ')"
  if [ -n "$why" ]; then
    failed=$((failed + 1))
    echo "FAIL $name: $why"
    echo "     stderr: $err"
  else
    echo "ok   $name: $err"
  fi
}

mkdir -p "$WORK/case" "$WORK/case/ext"
cd "$WORK/case" || exit 1
cp "$MODEL" model.onnx
: > empty.onnx
head -c 4096 /dev/urandom > random.onnx
head -c $(( $(stat -c %s model.onnx) / 2 )) model.onnx > truncated.onnx
printf 'PK\003\004\024\000\000\000\010\000' > checkpoint.onnx
printf 'GGUF\003\000\000\000' > llama.onnx
echo '{"input": "model.onnx"}' > notamodel.onnx
mkdir -p adir.onnx

# External data: a model whose weights live in model.onnx.data, then copies whose location
# points elsewhere (same-length edits of the stored location string).
"$SLMOPS" -q convert model.onnx -o ext/m.onnx --external-data always >/dev/null || { echo "FAIL setup: external save"; exit 1; }
cp ext/m.onnx ext/escape.onnx && perl -pi -e 's/m\.onnx\.data/..\/secret.d/g' ext/escape.onnx
cp ext/m.onnx ext/missing.onnx && perl -pi -e 's/m\.onnx\.data/n.onnx.data/g' ext/missing.onnx
cp ext/m.onnx ext/absolute.onnx && perl -pi -e 's/m\.onnx\.data/\/etc\/passwd/g' ext/absolute.onnx
mkdir -p ext/short && cp ext/m.onnx ext/short/m.onnx && head -c 10 ext/m.onnx.data > ext/short/m.onnx.data
cp ext/m.onnx.data secret.d

recipe() { printf '%s\n' "$2" > "$1"; }
recipe syntax.json '{"input": "model.onnx", "output": "out.onnx", "steps": [ {"pass": "cleanup",, } ]}'
recipe unknown_pass.json '{"input": "model.onnx", "output": "out.onnx", "steps": [{"pass": "cleanpu"}]}'
recipe unknown_option.json '{"input": "model.onnx", "output": "out.onnx", "steps": [{"pass": "cleanup", "options": {"remove-identiy": true}}]}'
recipe wrong_type.json '{"input": "model.onnx", "output": "out.onnx", "steps": [{"pass": "cleanup", "options": {"remove-identity": "yes"}}]}'
recipe missing_input.json '{"input": "nope.onnx", "output": "out.onnx", "steps": [{"pass": "cleanup"}]}'
recipe typo_key.json '{"input": "model.onnx", "output": "out.onnx", "descripton": "x", "steps": [{"pass": "cleanup"}]}'
recipe no_steps.json '{"input": "model.onnx", "output": "out.onnx", "steps": []}'
recipe same_output.json '{"input": "model.onnx", "output": "model.onnx", "steps": [{"pass": "cleanup"}]}'
recipe good.json '{"input": "model.onnx", "output": "out.onnx", "steps": [{"pass": "cleanup"}]}'
# tokenize (#15, #20): tokenizer files with components slmops does not have, bad ids.
mkdir -p tok_unigram tok_bert tok_ok
recipe text.jsonl '{"text": "hello"}'
recipe text_num.jsonl '{"text": 5}'
recipe tok_ok/tokenizer.json '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}}'
recipe tok_unigram/tokenizer.json '{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}'
recipe tok_bert/tokenizer.json '{"normalizer": {"type": "BertNormalizer"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}'
# Checkpoints (#14): a truncated safetensors file, one whose offsets leave the data, an index
# whose shard leaves the folder.
node -e "const h = Buffer.from(JSON.stringify({w: {dtype: 'F32', shape: [4], data_offsets: [0, 16]}}).padEnd(56));
  const n = Buffer.alloc(8); n.writeBigUInt64LE(BigInt(h.length));
  require('fs').writeFileSync('trunc.safetensors', Buffer.concat([n, h, Buffer.alloc(8)]));
  const l = Buffer.from(JSON.stringify({w: {dtype: 'F32', shape: [4], data_offsets: [8, 24]}}).padEnd(56));
  require('fs').writeFileSync('lying.safetensors', Buffer.concat([n, l, Buffer.alloc(16)]));"
mkdir -p ckpt_escape
recipe ckpt_escape/model.safetensors.index.json '{"weight_map": {"w": "../trunc.safetensors"}}'
# Checkpoint folders for convert (#14): no config.json, an unknown architecture, a tensor
# missing, a tensor of the wrong shape, a truncated shard.
HFX=$3/tests/fixtures/hf/llama_gqa
for c in hf_noconfig hf_arch hf_missing hf_shape hf_trunc; do mkdir -p $c && cp "$HFX"/* $c/; done
rm hf_noconfig/config.json
sed -i 's/LlamaForCausalLM/GPTNeoXForCausalLM/' hf_arch/config.json
sed -i 's/"num_hidden_layers": 2/"num_hidden_layers": 3/' hf_missing/config.json
sed -i 's/"intermediate_size": [0-9]*/"intermediate_size": 200/' hf_shape/config.json
truncate -s -100 hf_trunc/model.safetensors
# Chat templates: one that raises on a system message, one that does not parse, one missing.
mkdir -p chat_raise chat_syntax
cp tok_ok/tokenizer.json chat_raise/ && cp tok_ok/tokenizer.json chat_syntax/
recipe chat_raise/tokenizer_config.json '{"chat_template": "{% for m in messages %}{% if m.role == \"system\" %}{{ raise_exception(\"System role not supported\") }}{% endif %}{{ m.content }}{% endfor %}"}'
recipe chat_syntax/tokenizer_config.json '{"chat_template": "{% for m in messages %}{{ m.content }}"}'
recipe chat_system.json '[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]'
recipe chat_notlist.json '{"role": "user", "content": "u"}'
recipe eval_huge_int.json '{"input": "model.onnx", "output": "out.onnx", "steps": [{"pass": "evaluate", "options": {"data": "digits.npz", "batch-size": 169852274605654744777777777707777110706985221}}]}'
recipe long_output.json "{\"input\": \"model.onnx\", \"output\": \"$(printf 'o%.0s' $(seq 300)).onnx\", \"steps\": [{\"pass\": \"cleanup\"}]}"
recipe quant_typo.json '{"input": "gpt.onnx", "output": "out.onnx", "steps": [{"pass": "quantize", "options": {"mode": "int4-weight", "blok-size": 32}}]}'
recipe opt_typo.json '{"input": "gpt.onnx", "output": "out.onnx", "steps": [{"pass": "optimize", "options": {"input-shapes": ["input_ids=1,8"]}}]}'
recipe f16_dtype.json '{"input": "gpt.onnx", "output": "out.onnx", "steps": [{"pass": "to-float16", "options": {"dtype": "float8"}}]}'
recipe quant_mode.json '{"input": "gpt.onnx", "output": "out.onnx", "steps": [{"pass": "quantize", "options": {"mode": "int3-weight"}}]}'
# Quantization inputs: the fixture models, one of them already quantized.
cp "$FX/gpt_bytes.onnx" gpt.onnx
ND=/usr/share/libonnx-testdata/data/node
cp "$ND/test_tril/model.onnx" tril.onnx                                    # Trilu: opset 14 and later
cp "$ND/test_reshape_allowzero_reordered/model.onnx" allowzero.onnx        # Reshape-14 allowzero=1
cp "$FX/cnn_digits_calib.npz" digits.npz
cp "$FX/lm_calib.npz" lm.npz
"$SLMOPS" -q quantize gpt.onnx -o gpt_int4.onnx --mode int4-weight >/dev/null || { echo "FAIL setup: quantize"; exit 1; }
cd - >/dev/null || exit 1

S=$SLMOPS
expect_bad "empty file"                 "$S" convert empty.onnx -o out.onnx
expect_bad "random bytes"               "$S" convert random.onnx -o out.onnx
expect_bad "truncated protobuf"         "$S" convert truncated.onnx -o out.onnx
expect_bad "zip magic (pytorch .pt)"    "$S" convert checkpoint.onnx -o out.onnx
expect_bad "GGUF magic"                 "$S" inspect llama.onnx
expect_bad "JSON given as a model"      "$S" convert notamodel.onnx -o out.onnx
expect_bad "missing input model"        "$S" convert nope.onnx -o out.onnx
expect_bad "input is a folder"          "$S" inspect adir.onnx
expect_bad "output folder missing"      "$S" convert model.onnx -o missing/out.onnx
expect_bad "output folder unwritable"   "$S" convert model.onnx -o /proc/out.onnx
expect_bad "output equals input"        "$S" convert model.onnx -o model.onnx
expect_bad "output equals input (./)"   "$S" convert model.onnx -o ./model.onnx
expect_bad "output is a folder"         "$S" convert model.onnx -o adir.onnx
expect_bad "unknown flag"               "$S" convert model.onnx -o out.onnx --bogus
expect_bad "bad --external-data"        "$S" convert model.onnx -o out.onnx --external-data sometimes
expect_bad "bad option value on CLI"    "$S" convert model.onnx -o out.onnx --remove-identity maybe
expect_bad "missing -o"                 "$S" convert model.onnx
# convert --optimize --input-shape (#12): the name must be a graph input, every dim a positive integer.
expect_bad "optimize: --input-shape names no input" "$S" convert gpt.onnx -o out.onnx --optimize --input-shape ids=8,64
expect_bad "optimize: --input-shape dim 0" "$S" convert gpt.onnx -o out.onnx --optimize --input-shape input_ids=8,0
expect_bad "optimize: --input-shape dim -1" "$S" convert gpt.onnx -o out.onnx --optimize --input-shape input_ids=-1,64
expect_bad "optimize: --input-shape wrong rank" "$S" convert gpt.onnx -o out.onnx --optimize --input-shape input_ids=8
expect_bad "optimize: --input-shape no '='" "$S" convert gpt.onnx -o out.onnx --optimize --input-shape 8,64
expect_bad "optimize: --input-shape without --optimize" "$S" convert gpt.onnx -o out.onnx --input-shape input_ids=8,64
expect_bad "optimize: unknown --target" "$S" convert gpt.onnx -o out.onnx --optimize --target tensorrt
expect_bad "optimize: recipe option typo" "$S" run opt_typo.json
# convert --to (#13): the type, the block list's op types, flags that need --to.
expect_bad "to-float16: --to fp8"       "$S" convert gpt.onnx -o out.onnx --to fp8
expect_bad "to-float16: unknown op in block list" "$S" convert gpt.onnx -o out.onnx --to fp16 --op-block-list Softmax,Sotfmax
expect_bad "to-float16: --keep-io-types without --to" "$S" convert gpt.onnx -o out.onnx --keep-io-types
expect_bad "to-float16: recipe bad dtype" "$S" run f16_dtype.json
expect_bad "mixed: no --calib-data"     "$S" convert gpt.onnx -o out.onnx --to mixed
expect_bad "mixed: --calib-data without --to mixed" "$S" convert gpt.onnx -o out.onnx --to fp16 --calib-data digits.npz
expect_bad "mixed: --max-degradation malformed" "$S" convert gpt.onnx -o out.onnx --to mixed --calib-data digits.npz --max-degradation perplexity
expect_bad "mixed: calib data that does not fit the model" "$S" convert gpt.onnx -o out.onnx --to mixed --calib-data digits.npz
expect_bad "opset: 3"                   "$S" convert gpt.onnx -o out.onnx --opset 3
expect_bad "opset: 99"                  "$S" convert gpt.onnx -o out.onnx --opset 99
expect_bad "opset: op newer than target" "$S" convert tril.onnx -o out.onnx --opset 13
expect_bad "opset: attribute older schema lacks" "$S" convert allowzero.onnx -o out.onnx --opset 13
expect_bad "ir-version: 3"              "$S" convert gpt.onnx -o out.onnx --ir-version 3
expect_bad "ir-version: 99"             "$S" convert gpt.onnx -o out.onnx --ir-version 99
expect_bad "ir-version: below the opset's" "$S" convert gpt.onnx -o out.onnx --ir-version 7
expect_bad "recipe JSON syntax error"   "$S" run syntax.json
expect_bad "recipe unknown pass"        "$S" run unknown_pass.json
expect_bad "recipe unknown option key"  "$S" run unknown_option.json
expect_bad "recipe wrong option type"   "$S" run wrong_type.json
expect_bad "tokenize: no tokenizer.json" "$S" tokenize --tokenizer nope
expect_bad "tokenize: model type Unigram" "$S" tokenize --tokenizer tok_unigram
expect_bad "tokenize: normalizer BertNormalizer" "$S" tokenize --tokenizer tok_bert/tokenizer.json
expect_bad "tokenize: --decode of a word" sh -c "echo '1 0 x' | '$S' tokenize --tokenizer tok_ok --decode"
expect_bad "tokenize: --decode id past the vocabulary" sh -c "echo '1 7' | '$S' tokenize --tokenizer tok_ok --decode"
expect_bad "tokenize --chat: the template raises" "$S" tokenize --tokenizer chat_raise --chat chat_system.json
expect_bad "tokenize --chat: template syntax error" "$S" tokenize --tokenizer chat_syntax --chat chat_system.json
expect_bad "tokenize --chat: no chat template" "$S" tokenize --tokenizer tok_ok --chat chat_system.json
expect_bad "tokenize --chat: messages not a list" "$S" tokenize --tokenizer chat_raise --chat chat_notlist.json
expect_bad "tokenize --chat: messages file missing" "$S" tokenize --tokenizer chat_raise --chat nope.json
expect_bad "tokenize --chat: --var without =" "$S" tokenize --tokenizer chat_raise --chat chat_system.json --var enable_thinking
expect_bad "tokenize: --ids without --chat" "$S" tokenize --tokenizer tok_ok --ids
expect_bad "inspect: truncated safetensors" "$S" inspect trunc.safetensors
expect_bad "inspect: safetensors offsets past the data" "$S" inspect lying.safetensors
expect_bad "inspect: shard leaving the checkpoint folder" "$S" inspect ckpt_escape
expect_bad "convert checkpoint: no config.json" "$S" convert hf_noconfig -o hf_out
expect_bad "convert checkpoint: unknown architecture" "$S" convert hf_arch -o hf_out
expect_bad "convert checkpoint: a tensor missing" "$S" convert hf_missing -o hf_out
expect_bad "convert checkpoint: a tensor of the wrong shape" "$S" convert hf_shape -o hf_out
expect_bad "convert checkpoint: truncated safetensors" "$S" convert hf_trunc -o hf_out
expect_bad "convert checkpoint: --precision int3" "$S" convert hf_shape -o hf_out --precision int3
expect_bad "convert checkpoint: --algorithm without --precision int4" "$S" convert hf_shape -o hf_out --algorithm hqq
expect_bad "convert checkpoint: --block-size not a power of two" "$S" convert hf_shape -o hf_out --precision int4 --block-size 48
expect_bad "convert checkpoint: --calib-data with round-to-nearest" "$S" convert hf_shape -o hf_out --precision int4 --calib-data text.jsonl
expect_bad "convert checkpoint: --target onnx-genai" "$S" convert hf_shape -o hf_out --target onnx-genai
expect_bad "convert model: --block-size is for a checkpoint" "$S" convert gpt.onnx -o gpt_out.onnx --block-size 64
expect_bad "prune: --sparsity 1" "$S" prune gpt.onnx -o gpt_out.onnx --method magnitude --sparsity 1
expect_bad "prune: --sparsity -0.1" "$S" prune gpt.onnx -o gpt_out.onnx --method magnitude --sparsity -0.1
expect_bad "prune: --pattern 4:4 (N >= M)" "$S" prune gpt.onnx -o gpt_out.onnx --method n:m --pattern 4:4
expect_bad "prune: --pattern 2-4" "$S" prune gpt.onnx -o gpt_out.onnx --method n:m --pattern 2-4
expect_bad "prune: wanda without --calib-data" "$S" prune gpt.onnx -o gpt_out.onnx --method wanda
expect_bad "prune: sparsegpt without --calib-data" "$S" prune gpt.onnx -o gpt_out.onnx --method sparsegpt --pattern 2:4
expect_bad "prune: no --method" "$S" prune gpt.onnx -o gpt_out.onnx
expect_bad "prune: structured with --pattern" "$S" prune gpt.onnx -o gpt_out.onnx --method structured --pattern 2:4
expect_bad "prune: structured --importance activation without --calib-data" "$S" prune gpt.onnx -o gpt_out.onnx --method structured --importance activation
cp /usr/share/libonnx-testdata/data/pytorch-converted/test_Linear/model.onnx "$WORK/case/linear.onnx"
expect_bad "prune: structured, no prunable structure (one Gemm)" "$S" prune linear.onnx -o pruned.onnx --method structured
expect_bad "prune: --global with wanda" "$S" prune gpt.onnx -o gpt_out.onnx --method wanda --global --calib-data lm_calib.npz
cp /usr/share/libonnx-testdata/data/node/test_relu/model.onnx "$WORK/case/relu.onnx"
expect_bad "prune: nothing to prune (no MatMul/Gemm/Conv)" "$S" prune relu.onnx -o pruned.onnx --method magnitude
expect_bad "evaluate: text rows without a tokenizer" "$S" evaluate gpt.onnx --data text.jsonl
expect_bad "evaluate: text that is not a string" "$S" evaluate gpt.onnx --data text_num.jsonl --tokenizer tok_ok
expect_bad "recipe int option 1.7e44 (a JSON float)" "$S" run eval_huge_int.json
expect_bad "recipe output name too long" "$S" run long_output.json
expect_bad "recipe --set value not UTF-8" "$S" run good.json --set "$(printf 'steps.0.options.subgraphs=f\x9fx')"
expect_bad "recipe missing input file"  "$S" run missing_input.json
expect_bad "recipe unknown key (typo)"  "$S" run typo_key.json
expect_bad "recipe with no steps"       "$S" run no_steps.json
expect_bad "recipe output is the input" "$S" run same_output.json
expect_bad "recipe file missing"        "$S" run nope.json
expect_bad "--set on a missing step"    "$S" run good.json --set steps.3.pass=cleanup
expect_bad "external data leaves folder" "$S" inspect ext/escape.onnx
expect_bad "external data absolute path" "$S" convert ext/absolute.onnx -o out.onnx
expect_bad "external data file missing" "$S" convert ext/missing.onnx -o out.onnx
expect_bad "external data past the end" "$S" convert ext/short/m.onnx -o out.onnx
# distill-data (#16): the prompts are read (and refused) before the teacher is loaded.
recipe "$WORK/case/prompts_bad.jsonl" '{"prompt": "a"}
not json'
recipe "$WORK/case/prompts_none.jsonl" '{"text": "a"}'
recipe "$WORK/case/prompts_ok.jsonl" '{"prompt": "a"}'
: > "$WORK/case/prompts_empty.jsonl"
expect_bad "distill-data: teacher missing" "$S" distill-data --teacher t --prompts prompts_ok.jsonl -o out.jsonl
expect_bad "distill-data: prompt row not JSON" "$S" distill-data --teacher model.onnx --prompts prompts_bad.jsonl -o out.jsonl
expect_bad "distill-data: row without messages/prompt" "$S" distill-data --teacher model.onnx --prompts prompts_none.jsonl -o out.jsonl
expect_bad "distill-data: no prompt rows" "$S" distill-data --teacher model.onnx --prompts prompts_empty.jsonl -o out.jsonl
expect_bad "distill-data: prompts missing" "$S" distill-data --teacher model.onnx --prompts nope.jsonl -o out.jsonl
expect_bad "distill-data: not a decoder" "$S" distill-data --teacher model.onnx --prompts prompts_ok.jsonl -o out.jsonl
expect_bad "distill-data: --n 2 greedy" "$S" distill-data --teacher model.onnx --prompts prompts_ok.jsonl -o out.jsonl --n 2
expect_bad "distill-data: --logprobs 21" "$S" distill-data --teacher model.onnx --prompts prompts_ok.jsonl -o out.jsonl --logprobs 21
expect_bad "distill-data: --shard 2/2" "$S" distill-data --teacher model.onnx --prompts prompts_ok.jsonl -o out.jsonl --shard 2/2
expect_bad "distill-data: API key variable unset" env -u NO_SUCH_KEY "$S" distill-data --teacher http://127.0.0.1:9 --prompts prompts_ok.jsonl -o out.jsonl --api-key-env NO_SUCH_KEY
expect_bad "distill-data: URL not http(s)" "$S" distill-data --teacher http://[bad --prompts prompts_ok.jsonl -o out.jsonl
expect_bad "distill-data: --merge of a missing file" "$S" distill-data --merge nope.jsonl -o out.jsonl
expect_bad "distill-data: --merge of a non-output" "$S" distill-data --merge prompts_ok.jsonl -o out.jsonl
expect_bad "distill-data: --soft-labels without --inputs" "$S" distill-data --soft-labels --teacher model.onnx -o out.npz
expect_bad "quantize: no --mode"        "$S" quantize gpt.onnx -o out.onnx
expect_bad "quantize: unknown mode"     "$S" quantize gpt.onnx -o out.onnx --mode int3-weight
expect_bad "quantize: already quantized" "$S" quantize gpt_int4.onnx -o out.onnx --mode int8-dynamic
expect_bad "quantize: block size not 2^n" "$S" quantize gpt.onnx -o out.onnx --mode int4-weight --block-size 48
expect_bad "quantize: block size 512"   "$S" quantize gpt.onnx -o out.onnx --mode int4-weight --block-size 512
expect_bad "quantize: block !divide K"  "$S" quantize gpt.onnx -o out.onnx --mode int4-weight --block-size 128
expect_bad "quantize: calib data of another model" "$S" quantize gpt.onnx -o out.onnx --mode int8-static --calib-data digits.npz
expect_bad "quantize: calib data missing" "$S" quantize gpt.onnx -o out.onnx --mode int8-static --calib-data nope.npz
expect_bad "quantize: static without calib" "$S" quantize gpt.onnx -o out.onnx --mode int8-static
expect_bad "quantize: gptq without calib" "$S" quantize gpt.onnx -o out.onnx --mode int4-weight --algorithm gptq
expect_bad "quantize: excluded node absent" "$S" quantize gpt.onnx -o out.onnx --mode int4-weight --exclude-nodes /blocks.0/attn/NoSuchMatMul
expect_bad "quantize: goal without eval data" "$S" quantize gpt.onnx -o out.onnx --mode int4-weight --max-degradation perplexity:1%
expect_bad "quantize: malformed goal"   "$S" quantize gpt.onnx -o out.onnx --mode int4-weight --max-degradation perplexity --eval-data lm.npz
expect_bad "quantize: unknown goal metric" "$S" quantize gpt.onnx -o out.onnx --mode int4-weight --max-degradation bleu:1 --eval-data lm.npz
expect_bad "quantize: recipe option typo" "$S" run quant_typo.json
expect_bad "quantize: recipe bad mode"  "$S" run quant_mode.json
expect_bad "quantize: output unwritable" "$S" quantize gpt.onnx -o /proc/out.onnx --mode int4-weight
expect_bad "no subcommand"              "$S"

echo "$((cases - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
