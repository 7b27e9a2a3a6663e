// Writes a Llama-shaped Hugging Face checkpoint of random BF16 weights (config.json,
// generation_config.json, model.safetensors) for bench/convert_hf_bench.sh. Deterministic
// (xorshift); ~2 bytes per parameter. Usage: node make_hf_checkpoint.js DIR [--mb 500]
const fs = require('fs');
const path = require('path');
const dir = process.argv[2];
const mbArg = process.argv.indexOf('--mb');
const mb = mbArg > 0 ? Number(process.argv[mbArg + 1]) : 500;
// hidden 1024, 16 heads / 8 kv heads, intermediate 2816, vocab 32000; layers to reach `mb`.
const E = 1024, H = 16, KV = 8, D = 64, I = 2816, V = 32000;
const perLayer = E * H * D + 2 * E * KV * D + H * D * E + 3 * E * I + 2 * E;
const L = Math.max(1, Math.round((mb * 1e6 / 2 - 2 * V * E - E) / perLayer));
const tensors = [['model.embed_tokens.weight', [V, E]]];
for (let l = 0; l < L; ++l) {
  const p = `model.layers.${l}.`;
  tensors.push([p + 'input_layernorm.weight', [E]], [p + 'post_attention_layernorm.weight', [E]],
               [p + 'self_attn.q_proj.weight', [H * D, E]], [p + 'self_attn.k_proj.weight', [KV * D, E]],
               [p + 'self_attn.v_proj.weight', [KV * D, E]], [p + 'self_attn.o_proj.weight', [E, H * D]],
               [p + 'mlp.gate_proj.weight', [I, E]], [p + 'mlp.up_proj.weight', [I, E]],
               [p + 'mlp.down_proj.weight', [E, I]]);
}
tensors.push(['model.norm.weight', [E]], ['lm_head.weight', [V, E]]);
const header = {};
let off = 0;
for (const [name, shape] of tensors) {
  const n = shape.reduce((a, b) => a * b, 1) * 2;
  header[name] = { dtype: 'BF16', shape, data_offsets: [off, off + n] };
  off += n;
}
header.__metadata__ = { format: 'pt' };
let h = Buffer.from(JSON.stringify(header));
h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
fs.mkdirSync(dir, { recursive: true });
const fd = fs.openSync(path.join(dir, 'model.safetensors'), 'w');
const len = Buffer.alloc(8);
len.writeBigUInt64LE(BigInt(h.length));
fs.writeSync(fd, len);
fs.writeSync(fd, h);
let s = 0x9e3779b9;
const chunk = Buffer.alloc(1 << 22);
for (let left = off; left > 0;) {
  const n = Math.min(left, chunk.length);
  for (let i = 0; i < n; i += 2) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    // bf16 of a small normal-ish value: sign, exponent around 2^-5, random mantissa
    const v = 0x3c00 | (s & 0x7f) | ((s >>> 16) & 0x8000) | (((s >>> 8) & 3) << 7);
    chunk[i] = v & 0xff;
    chunk[i + 1] = v >>> 8;
  }
  fs.writeSync(fd, chunk, 0, n);
  left -= n;
}
fs.closeSync(fd);
fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: E, intermediate_size: I,
  num_hidden_layers: L, num_attention_heads: H, num_key_value_heads: KV, vocab_size: V,
  max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000.0, hidden_act: 'silu',
  tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2, torch_dtype: 'bfloat16' }, null, 2));
fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }));
console.log(JSON.stringify({ layers: L, bytes: off + 8 + h.length }));
