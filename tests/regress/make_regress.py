#!/usr/bin/python3
"""Writes the small malformed inputs of tests/regress/ (each a few KB or less), one per
finding of the sanitizer and fuzz runs (issues #18, #19, #21). The files are committed;
regress_test.sh runs slmops on each and checks the exit code, the one-line message and
that nothing was written. Regenerate with: /usr/bin/python3 tests/regress/make_regress.py
(needs Debian's python3-onnx and python3-numpy)."""
import io
import os
import struct
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "inputs")
os.makedirs(OUT, exist_ok=True)


def save(model, name, check=False):
    if check:
        onnx.checker.check_model(model)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(model.SerializeToString())


def model_of(nodes, inputs, outputs, inits=(), opset=13, name="g"):
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="regress")
    m.ir_version = 8
    return m


F = TensorProto.FLOAT
I64 = TensorProto.INT64

# #19/#21: a MatMul whose declared input dims wrap when multiplied (2^62 x 4 floats).
save(model_of([helper.make_node("MatMul", ["x", "w"], ["y"])],
              [helper.make_tensor_value_info("x", F, [2**62, 4])],
              [helper.make_tensor_value_info("y", F, None)],
              [helper.make_tensor("w", F, [4, 2], np.ones(8, np.float32))]),
     "matmul_wrapping_dims.onnx")

# #19: input dims in the billions (10^9 x 10^9 floats: 4 EB), must be refused before allocating.
save(model_of([helper.make_node("Relu", ["x"], ["y"])],
              [helper.make_tensor_value_info("x", F, [1000000000, 1000000000])],
              [helper.make_tensor_value_info("y", F, None)]),
     "billions_dims.onnx")

# #18/#19: duplicate value names around a Cast (two nodes write 'c').
save(model_of([helper.make_node("Cast", ["x"], ["c"], to=TensorProto.INT64),
               helper.make_node("Cast", ["x"], ["c"], to=TensorProto.INT32),
               helper.make_node("Identity", ["c"], ["y"])],
              [helper.make_tensor_value_info("x", F, [2, 3])],
              [helper.make_tensor_value_info("y", I64, None)]),
     "cast_duplicate_names.onnx")

# #19: input dims that feed the batch cutter oddly: a zero batch dim and a negative one.
save(model_of([helper.make_node("Relu", ["x"], ["y"])],
              [helper.make_tensor_value_info("x", F, [0, 3])],
              [helper.make_tensor_value_info("y", F, None)]),
     "zero_batch_dim.onnx")
save(model_of([helper.make_node("Relu", ["x"], ["y"])],
              [helper.make_tensor_value_info("x", F, [-7, 3])],
              [helper.make_tensor_value_info("y", F, None)]),
     "negative_dim.onnx")

# #19: an absurd attribute: TopK-1 asking for k = 2^62 results of a 4-element input.
save(model_of([helper.make_node("TopK", ["x"], ["v", "i"], k=2**62)],
              [helper.make_tensor_value_info("x", F, [1, 4])],
              [helper.make_tensor_value_info("v", F, None), helper.make_tensor_value_info("i", I64, None)],
              opset=1),
     "topk_absurd_k.onnx")

# #18: Conv whose group attribute overflows the channel arithmetic (2^62 x 3).
save(model_of([helper.make_node("Conv", ["x", "w"], ["y"], group=3 * 2**61)],
              [helper.make_tensor_value_info("x", F, [1, 2, 4, 4])],
              [helper.make_tensor_value_info("y", F, None)],
              [helper.make_tensor("w", F, [2, 2, 1, 1], np.ones(4, np.float32))]),
     "conv_group_overflow.onnx")

# #18: Conv with window attributes whose geometry overflows (dilation 2^62).
save(model_of([helper.make_node("Conv", ["x", "w"], ["y"], dilations=[2**62, 1])],
              [helper.make_tensor_value_info("x", F, [1, 1, 4, 4])],
              [helper.make_tensor_value_info("y", F, None)],
              [helper.make_tensor("w", F, [1, 1, 3, 1], np.ones(3, np.float32))]),
     "conv_dilation_overflow.onnx")

# #21: an initializer declaring 3 GiB ([805306368] float) with 16 bytes stored inline, as
# raw_data and as float_data.
for name, raw in (("initializer_declares_3gib.onnx", True), ("initializer_declares_3gib_typed.onnx", False)):
    w = helper.make_tensor("w", F, [4], np.ones(4, np.float32).tobytes() if raw else np.ones(4, np.float32), raw=raw)
    w.dims[0] = 805306368
    save(model_of([helper.make_node("Add", ["x", "w"], ["y"])],
                  [helper.make_tensor_value_info("x", F, [1])],
                  [helper.make_tensor_value_info("y", F, None)], [w]),
         name)

# #21: an initializer whose shape product wraps ([2^62, 4]) with no data: Gather reads it.
w = helper.make_tensor("table", F, [0], [])
del w.dims[:]
w.dims.extend([2**62, 4])
save(model_of([helper.make_node("Gather", ["table", "i"], ["y"])],
              [helper.make_tensor_value_info("i", I64, [2])],
              [helper.make_tensor_value_info("y", F, None)], [w]),
     "gather_wrapping_table.onnx")

# #21: Reshape to a target whose element count wraps to the input's (0 elements).
save(model_of([helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
              [helper.make_tensor_value_info("x", F, [0])],
              [helper.make_tensor_value_info("y", F, None)],
              [helper.make_tensor("s", I64, [2], [2**62, 4])]),
     "reshape_wrapping_target.onnx")

# #21: a string-typed graph input into Cast (valid model; --random must feed strings).
save(model_of([helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT)],
              [helper.make_tensor_value_info("s", TensorProto.STRING, [2, 3])],
              [helper.make_tensor_value_info("y", F, [2, 3])]),
     "string_input_cast.onnx", check=True)

# #11/#21: a language model whose vocabulary (86 rows) is smaller than 100: random token ids
# must stay below the embedding's row count.
emb = helper.make_tensor("emb", F, [86, 4], np.linspace(0, 1, 344, dtype=np.float32))
save(model_of([helper.make_node("Gather", ["emb", "ids"], ["y"])],
              [helper.make_tensor_value_info("ids", I64, ["batch", 8])],
              [helper.make_tensor_value_info("y", F, ["batch", 8, 4])], [emb]),
     "small_vocab_lm.onnx", check=True)

# A valid tiny model the npz cases below are fed to.
save(model_of([helper.make_node("Relu", ["x"], ["y"])],
              [helper.make_tensor_value_info("x", F, ["n", 3])],
              [helper.make_tensor_value_info("y", F, ["n", 3])]),
     "relu.onnx", check=True)


def npy_bytes(header, data=b""):
    h = header.encode()
    total = 10 + len(h) + 1
    h += b" " * ((64 - total % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + data


def write_zip(name, members, compress=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        for mname, data in members:
            info = zipfile.ZipInfo(mname, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compress
            z.writestr(info, data)
    return buf.getvalue()


good = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", np.ones(6, np.float32).tobytes())

# #19: a stored member whose declared size runs past the end of the archive.
z = bytearray(write_zip("x", [("x.npy", good)]))
cd = z.rfind(b"PK\x01\x02")
struct.pack_into("<I", z, cd + 20, 1 << 30)  # compressed size
struct.pack_into("<I", z, cd + 24, 1 << 30)  # uncompressed size
open(os.path.join(OUT, "npz_member_past_eof.npz"), "wb").write(z)

# #19: a .npy header whose shape product wraps to 0 (2^32 x 2^32) and one that overflows.
open(os.path.join(OUT, "npz_shape_wraps.npz"), "wb").write(
    write_zip("x", [("x.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"))]))
open(os.path.join(OUT, "npz_shape_overflows.npz"), "wb").write(
    write_zip("x", [("x.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 3), }"))]))

# #19: a shape entry that is not a number.
open(os.path.join(OUT, "npz_shape_not_number.npz"), "wb").write(
    write_zip("x", [("x.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, three), }"))]))

# #19: a deflated member that declares 3.75 GiB.
z = bytearray(write_zip("x", [("x.npy", good)], zipfile.ZIP_DEFLATED))
cd = z.rfind(b"PK\x01\x02")
struct.pack_into("<I", z, cd + 24, 0xF0000000)
open(os.path.join(OUT, "npz_deflated_3_75gib.npz"), "wb").write(z)

# npz: a header with no closing quote / parenthesis.
open(os.path.join(OUT, "npz_header_unclosed.npz"), "wb").write(
    write_zip("x", [("x.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3"))]))

# npz: a central directory entry whose name runs past the end of the file.
z = bytearray(write_zip("x", [("x.npy", good)]))
cd = z.rfind(b"PK\x01\x02")
struct.pack_into("<H", z, cd + 28, 0xFFFF)
open(os.path.join(OUT, "npz_name_past_eof.npz"), "wb").write(z)

# #18: a recipe nested 10,000 deep as a pass name.
open(os.path.join(OUT, "recipe_nested_10000.json"), "w").write(
    '{"input": "m.onnx", "output": "o.onnx", "steps": [{"pass": ' + "[" * 10000 + "]" * 10000 + "}]}")
# #18: a recipe step whose pass is "".
open(os.path.join(OUT, "recipe_empty_pass.json"), "w").write(
    '{"input": "relu.onnx", "output": "o.onnx", "steps": [{"pass": ""}]}')
# F18: libonnx 1.12 inference rules that index past what they checked (fuzz_onnx_load found
# the first, a ConvTranspose whose W [1, 1] has a lower rank than X; the fuzzer's input is
# committed as infer_convtranspose_low_rank_weights.onnx). One node per rule, each of which
# crashed libonnx's InferShapes (SIGSEGV or SIGFPE) or read past a buffer; ok_ct and ok_conv
# are valid and must keep their inferred shapes.
U8 = TensorProto.UINT8
x4 = helper.make_tensor_value_info("x", F, [1, 1, 5, 5])
q4 = helper.make_tensor_value_info("qx", U8, [1, 1, 5, 5])
scalar = lambda name, t: helper.make_tensor_value_info(name, t, [])
untyped = helper.make_value_info("untyped", onnx.TypeProto())
save(model_of(
    [helper.make_node("Identity", ["w2"], ["w2_copy"]),  # W's shape known only to inference
     helper.make_node("ConvTranspose", ["x", "w2_copy"], ["ct_low"]),
     helper.make_node("ConvTranspose", ["x", "w1"], ["ct_rank1"], kernel_shape=[3, 3]),
     helper.make_node("Conv", ["x", "w6"], ["conv_high"]),
     helper.make_node("Conv", ["x", "w2"], ["conv_low_same"], auto_pad="SAME_UPPER"),
     helper.make_node("Conv", ["x", "w4"], ["conv_stride0"], strides=[0, 1]),
     helper.make_node("MaxPool", ["x"], ["pool_stride0"], kernel_shape=[2, 2], strides=[1, 0]),
     helper.make_node("MaxUnpool", ["x", "untyped"], ["unpool"], kernel_shape=[2, 2]),
     helper.make_node("MaxRoiPool", ["x2", "rois"], ["roi"], pooled_shape=[]),
     helper.make_node("LayerNormalization", ["xs", "s"], ["ln", "ln_mean", "ln_inv_std"], axis=-5),
     helper.make_node("QLinearConv", ["qx", "sc", "zp", "qw6", "sc", "zp", "sc", "zp"], ["qconv"]),
     helper.make_node("ConvTranspose", ["x", "w4"], ["ok_ct"]),
     helper.make_node("Conv", ["x", "w4"], ["ok_conv"])],
    [x4, q4, untyped, helper.make_tensor_value_info("x2", F, [1, 1]),
     helper.make_tensor_value_info("rois", F, [1, 5]), helper.make_tensor_value_info("xs", F, [2, 3]),
     helper.make_tensor_value_info("s", F, [3]), helper.make_tensor_value_info("w1", F, [1]),
     helper.make_tensor_value_info("w2", F, [1, 1]), helper.make_tensor_value_info("w4", F, [1, 1, 3, 3]),
     helper.make_tensor_value_info("w6", F, [1, 1, 3, 3, 3, 3]),
     helper.make_tensor_value_info("qw6", U8, [1, 1, 3, 3, 3, 3]), scalar("sc", F), scalar("zp", U8)],
    [helper.make_value_info(n, onnx.TypeProto()) for n in
     ["ct_low", "ct_rank1", "conv_high", "conv_low_same", "conv_stride0", "pool_stride0", "unpool", "roi", "ln",
      "ln_mean", "ln_inv_std", "qconv", "ok_ct", "ok_conv"]],
    opset=17), "infer_unchecked_rules.onnx")
# Inputs found by the fuzz targets (npz_no_arrays, npz_duplicate_member, npz_empty_name,
# recipe_number_overflow.json, stale_external_entries.onnx) are committed as found; this
# script does not make them.
print("wrote", len(os.listdir(OUT)), "files to", OUT)
