#!/usr/bin/env bash
# slmops convert HF_DIR (issue #14) on the checkpoints of tests/fixtures/hf (tiny random-weight
# models of every family, with transformers' reference outputs): each built decoder runs in
# ONNX Runtime, its prefill logits agree with the reference within 1e-4, and 32 greedy steps
# with the KV cache give the reference's tokens (computed without a cache) and step logits;
# slmops generate gives the same tokens through our executor; the fp16 and --target
# onnxruntime builds agree too (the latter also through our GroupQueryAttention).
# Usage: convert_hf_interop.sh SLMOPS_BINARY SOURCE_DIR
set -u
S=$1
SRC=$2
HF=$SRC/tests/fixtures/hf
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slmops-hf-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=../../cli/testlib.sh
. "$SRC/tests/cli/testlib.sh"  # check NAME COMMAND..., finish

for dir in "$HF"/*/; do
  f=$(basename "$dir")
  [ -f "$dir/expected.npz" ] || continue
  out=$WORK/$f
  if ! "$S" -q convert "$dir" -o "$out" > /dev/null 2> "$WORK/$f.err"; then
    check "$f: convert ($(head -c 300 "$WORK/$f.err"))" false
    continue
  fi
  # longrope: transformers drops its cache when the length first passes the pretrained one and
  # recomputes with the long factors; a cached decoder keeps the keys it has, so its tokens are
  # compared with the reference's kept-cache run from there (both before step 17 are checked).
  flag=""
  [ "$f" = phi3_longrope ] && flag=--kv-kept
  res=$(node "$HERE/check_decoder.js" "$out/model.onnx" "$dir/expected.npz" 1e-4 $flag)
  echo "     $f: $(echo "$res" | cut -c1-230)"
  check "$f: ONNX Runtime prefill and 32 cached greedy steps equal transformers' reference (1e-4)" \
    node -e "process.exit(JSON.parse(process.argv[1]).ok ? 0 : 1)" "$res"
  want=$(echo "$res" | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).tokens.join(',')))")
  ids=$(node -e "const {readNpz}=require('$HERE/npz.js');console.log(Array.from(readNpz('$dir/expected.npz').input_ids.data).join(','))")
  got=$("$S" -q generate "$out" --input-ids "$ids" --max-new-tokens 32 --ignore-eos --json |
        node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).generated_ids.join(',')))")
  check "$f: slmops generate (our executor, KV cache) gives the same 32 tokens" [ "$got" = "$want" ]
  # fp16 (weights and compute; the cache and logits stay float32) and --target onnxruntime
  # (ORT's contrib fusions): the same tokens, logits within 0.15 (fp16 rounding of logits up
  # to |24|) and within 1e-4 for the fused fp32 graph.
  "$S" -q convert "$dir" -o "$WORK/$f.fp16" --precision fp16 > /dev/null 2>&1
  res=$(node "$HERE/check_decoder.js" "$WORK/$f.fp16/model.onnx" "$dir/expected.npz" 0.15 $flag)
  echo "     $f fp16: $(echo "$res" | cut -c1-120)"
  check "$f: fp16 build agrees within fp16 tolerance, same greedy tokens" \
    node -e "process.exit(JSON.parse(process.argv[1]).ok ? 0 : 1)" "$res"
  "$S" -q convert "$dir" -o "$WORK/$f.ort" --target onnxruntime > /dev/null 2>&1
  res=$(node "$HERE/check_decoder.js" "$WORK/$f.ort/model.onnx" "$dir/expected.npz" 1e-4 $flag)
  echo "     $f onnxruntime: $(echo "$res" | cut -c1-120)"
  check "$f: --target onnxruntime (RotaryEmbedding, GroupQueryAttention, fused norms) agrees within 1e-4, same tokens" \
    node -e "process.exit(JSON.parse(process.argv[1]).ok ? 0 : 1)" "$res"
  ops=$("$S" -q inspect "$WORK/$f.ort/model.onnx" --json |
        node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const o=JSON.parse(s).op_types;console.log(['com.microsoft.GroupQueryAttention','com.microsoft.RotaryEmbedding','SimplifiedLayerNormalization','com.microsoft.SkipSimplifiedLayerNormalization'].map(k=>o[k]||0).join(','))})")
  layers=$(node -e "console.log(require('$dir/config.json').num_hidden_layers)")
  check "$f: --target onnxruntime holds one GroupQueryAttention and two RotaryEmbedding per layer, and fused norms ($ops)" \
    node -e "const [g,r,n,k]='$ops'.split(',').map(Number);process.exit(g===$layers&&r===2*$layers&&n+k>=2*$layers?0:1)"
  got=$("$S" -q generate "$WORK/$f.ort" --input-ids "$ids" --max-new-tokens 32 --ignore-eos --json |
        node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).generated_ids.join(',')))")
  check "$f: slmops generate runs the --target onnxruntime build (our GroupQueryAttention) to the same 32 tokens" \
    [ "$got" = "$want" ]
done
# A trained checkpoint (llama_trained: byte-level text, held-out eval_text.jsonl): the built
# fp32 model's perplexity through slmops evaluate (the folder's tokenizer) equals the
# reference's within 1e-4 (relative), and the int4 build's is within 3% of it.
T=$HF/llama_trained
if [ -f "$T/perplexity.json" ]; then
  "$S" -q convert "$T" -o "$WORK/trained32" > /dev/null 2>&1
  "$S" -q convert "$T" -o "$WORK/trained4" --precision int4 > /dev/null 2>&1
  ppl() { "$S" -q evaluate "$1/model.onnx" --data "$T/eval_text.jsonl" --json |
          node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).metrics.perplexity))"; }
  p32=$(ppl "$WORK/trained32")
  p4=$(ppl "$WORK/trained4")
  ref=$(node -e "console.log(require('$T/perplexity.json').perplexity.perplexity)")
  echo "     llama_trained perplexity: reference $ref, fp32 $p32, int4 $p4"
  check "llama_trained: fp32 perplexity equals the reference's (1e-4 relative)" \
    node -e "process.exit(Math.abs($p32 / $ref - 1) < 1e-4 ? 0 : 1)"
  check "llama_trained: int4 perplexity within 3% of fp32" node -e "process.exit($p4 <= 1.03 * $p32 ? 0 : 1)"
  # int4 quantized as the weights are read (from-hf weights=int4) against the quantize pass over
  # the fp32 model: the same MatMulNBits bytes, so the same perplexity to the last digit.
  printf '{"input": "%s", "output": "%s", "steps": [{"pass": "from-hf"}, {"pass": "quantize", "options": {"mode": "int4-weight"}}, {"pass": "package-genai", "options": {"flavor": "plain"}}]}\n' \
    "$(cd "$T" && pwd)" "$WORK/trained4q" > "$WORK/rtn_after.json"
  "$S" -q run "$WORK/rtn_after.json" > /dev/null 2>&1
  p4q=$(ppl "$WORK/trained4q")
  echo "     llama_trained int4: streamed $p4, quantize pass $p4q"
  check "llama_trained: int4 quantized while converting equals the quantize pass over fp32 ($p4 = $p4q)" [ "$p4" = "$p4q" ]
  # --target onnxruntime: the same perplexity through our executor's GroupQueryAttention.
  "$S" -q convert "$T" -o "$WORK/trained_ort" --target onnxruntime > /dev/null 2>&1
  port=$(ppl "$WORK/trained_ort")
  check "llama_trained: --target onnxruntime perplexity equals fp32's (1e-4 relative: $port vs $p32)" \
    node -e "process.exit(Math.abs($port / $p32 - 1) < 1e-4 ? 0 : 1)"
else
  check "llama_trained fixture present (tests/fixtures/hf/llama_trained/perplexity.json)" false
fi
finish
