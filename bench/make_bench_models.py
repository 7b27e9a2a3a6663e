#!/usr/bin/python3
"""Writes the models the benchmarks time against ONNX Runtime (issue 12), random-initialised
with a fixed seed, so that nobody has to download weights:

  resnet18.onnx      torchvision resnet18, eval mode, input [N, 3, 224, 224] float
  mobilenet_v2.onnx  torchvision mobilenet_v2, eval mode, input [N, 3, 224, 224] float
  gpt2_small.onnx    a GPT-2-small-shaped decoder (12 layers, d_model 768, 12 heads, ffn 3072,
                     vocab 50257, context 1024) in plain torch modules; input input_ids int64
                     [batch, seq], output logits [batch, seq, 50257]; weights in
                     gpt2_small.onnx.data (external data: ~650 MB)

All at opset 17 with a dynamic batch (and sequence) dim; the CNNs' weights are inside the
.onnx. Uses Debian's python3-torch, python3-torchvision and python3-onnx (for the external-data
rewrite); the transformers package is not needed.

usage: /usr/bin/python3 bench/make_bench_models.py OUTDIR [--only NAME[,NAME...]]
"""
import argparse
import math
import os
import sys

import torch
import torch.nn as nn

OPSET = 17
SEED = 12


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with a causal mask, as GPT-2 computes it (fused qkv projection)."""

    def __init__(self, d_model, heads, context):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        mask = torch.tril(torch.ones(context, context, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, context, context), persistent=False)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        hd = c // self.heads
        q = q.view(b, t, self.heads, hd).transpose(1, 2)
        k = k.view(b, t, self.heads, hd).transpose(1, 2)
        v = v.view(b, t, self.heads, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = att.masked_fill(~self.mask[:, :, :t, :t], float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, d_model, heads, ffn, context):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, heads, context)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, ffn)
        self.act = nn.GELU(approximate="tanh")  # GPT-2's gelu_new
        self.out = nn.Linear(ffn, d_model)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.out(self.act(self.fc(self.ln2(x))))


class Gpt2Small(nn.Module):
    def __init__(self, vocab=50257, context=1024, d_model=768, heads=12, layers=12, ffn=3072):
        super().__init__()
        self.wte = nn.Embedding(vocab, d_model)
        self.wpe = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList([Block(d_model, heads, ffn, context) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied, as in GPT-2
        for name, p in self.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                nn.init.normal_(p, mean=0.0, std=0.02)

    def forward(self, input_ids):
        t = input_ids.shape[1]
        pos = torch.arange(t, dtype=torch.int64, device=input_ids.device).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def export_cnn(name, out_dir):
    import torchvision

    torch.manual_seed(SEED)
    model = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.rand(1, 3, 224, 224)
    path = os.path.join(out_dir, f"{name}.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, opset_version=OPSET, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True)
    return path


def export_gpt2(out_dir):
    import onnx

    torch.manual_seed(SEED)
    model = Gpt2Small().eval()
    ids = torch.randint(0, 50257, (1, 128), dtype=torch.int64)
    path = os.path.join(out_dir, "gpt2_small.onnx")
    # The exporter writes a model over 2 GB-proto-safe size with one file per tensor; it is
    # read back and saved again with every tensor in one external-data file.
    tmp_dir = os.path.join(out_dir, ".gpt2_small_export")
    os.makedirs(tmp_dir, exist_ok=True)
    tmp = os.path.join(tmp_dir, "model.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (ids,), tmp, opset_version=OPSET, input_names=["input_ids"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
                          do_constant_folding=True)
    m = onnx.load(tmp, load_external_data=True)
    data = "gpt2_small.onnx.data"
    if os.path.exists(os.path.join(out_dir, data)):
        os.remove(os.path.join(out_dir, data))
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data,
                    size_threshold=1024)
    for f in os.listdir(tmp_dir):
        os.remove(os.path.join(tmp_dir, f))
    os.rmdir(tmp_dir)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--only", default="resnet18,mobilenet_v2,gpt2_small",
                    help="comma-separated subset of resnet18, mobilenet_v2, gpt2_small")
    a = ap.parse_args()
    names = [n for n in a.only.split(",") if n]
    known = {"resnet18", "mobilenet_v2", "gpt2_small"}
    for n in names:
        if n not in known:
            sys.exit(f"make_bench_models: error: --only: unknown model '{n}' (known: {', '.join(sorted(known))})")
    os.makedirs(a.out_dir, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for n in names:
        path = export_gpt2(a.out_dir) if n == "gpt2_small" else export_cnn(n, a.out_dir)
        print(f"make_bench_models: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
