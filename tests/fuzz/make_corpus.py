#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/ (committed;
rerun after changing it). Standard library only: models are built with a few lines of protobuf
wire format, arrays with the .npy format by hand.

Usage: python3 tests/fuzz/make_corpus.py [ONNX_TESTDATA_DIR]
"""
import io
import os
import shutil
import struct
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")
TESTDATA = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/libonnx-testdata/data"

# Small conformance models (a few hundred bytes to a few KB) that between them hold subgraphs
# (If, Loop, Scan, SequenceMap), sequences, optionals, strings, quantized types, bfloat16,
# constants and initializers.
MODELS = [
    "node/test_if", "node/test_if_seq", "node/test_if_opt", "node/test_loop11", "node/test_loop16_seq_none",
    "node/test_scan9_sum", "node/test_sequence_map_add_1_sequence_1_tensor", "node/test_sequence_insert_at_front",
    "node/test_optional_has_element", "node/test_identity_sequence", "node/test_castlike_FLOAT_to_STRING",
    "node/test_strnormalizer_export_monday_casesensintive_lower", "node/test_quantizelinear",
    "node/test_dequantizelinear", "node/test_dynamicquantizelinear", "node/test_basic_convinteger",
    "node/test_matmulinteger", "node/test_cast_FLOAT_to_BFLOAT16", "node/test_constant",
    "node/test_constantofshape_int_shape_zero", "node/test_lstm_with_initial_bias", "node/test_gru_seq_length",
    "node/test_split_variable_parts_1d", "node/test_reshape_negative_dim", "node/test_gather_0",
    "node/test_einsum_batch_matmul", "node/test_resize_upsample_scales_linear",
    "node/test_conv_with_strides_no_padding", "node/test_convtranspose_dilations",
    "node/test_maxpool_with_argmax_2d_precomputed_pads", "node/test_batchnorm_example",
    "node/test_training_dropout", "node/test_bitshift_left_uint16", "node/test_mod_broadcast",
    "node/test_range_float_type_positive_delta_expanded", "node/test_layer_normalization_2d_axis0_expanded",
    "pytorch-converted/test_Conv2d", "pytorch-converted/test_BatchNorm2d_eval", "pytorch-converted/test_Linear",
    "pytorch-converted/test_Embedding", "pytorch-converted/test_PReLU_1d", "pytorch-operator/test_operator_conv",
    "simple/test_gradient_of_add_and_mul", "simple/test_sequence_model1", "simple/test_expand_shape_model1",
    "simple/test_single_relu_model",
]


# --- protobuf wire format (field numbers from onnx.proto) ---
def varint(v):
    out = bytearray()
    v &= (1 << 64) - 1
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def f_varint(n, v):
    return varint(n << 3) + varint(v)


def f_bytes(n, b):
    if isinstance(b, str):
        b = b.encode()
    return varint((n << 3) | 2) + varint(len(b)) + b


def value_info(name, elem, dims):
    shape = b"".join(f_bytes(1, f_varint(1, d) if isinstance(d, int) else f_bytes(2, d)) for d in dims)
    tt = f_varint(1, elem) + f_bytes(2, shape)
    return f_bytes(1, name) + f_bytes(2, f_bytes(1, tt))


def tensor(name, dtype, dims, raw=None, external=None, floats=None):
    t = b"".join(f_varint(1, d) for d in dims) + f_varint(2, dtype)
    if floats is not None:
        t += f_bytes(4, b"".join(struct.pack("<f", x) for x in floats))  # packed float_data
    t += f_bytes(8, name)
    if raw is not None:
        t += f_bytes(9, raw)
    if external is not None:
        for k, v in external:
            t += f_bytes(13, f_bytes(1, k) + f_bytes(2, v))
        t += f_varint(14, 1)
    return t


def node(op, ins, outs, name):
    return b"".join(f_bytes(1, i) for i in ins) + b"".join(f_bytes(2, o) for o in outs) + f_bytes(3, name) + f_bytes(4, op)


def model(nodes, inits, inputs, outputs, opset=17):
    g = b"".join(f_bytes(1, n) for n in nodes) + f_bytes(2, "g")
    g += b"".join(f_bytes(5, t) for t in inits)
    g += b"".join(f_bytes(11, i) for i in inputs) + b"".join(f_bytes(12, o) for o in outputs)
    return f_varint(1, 8) + f_bytes(2, "seed") + f_bytes(7, g) + f_bytes(8, f_bytes(1, "") + f_varint(2, opset))


# --- .npy / .npz ---
def npy(descr, shape, data, fortran=False, version=1):
    shp = "(" + "".join(f"{d}, " if len(shape) == 1 else f"{d}, " for d in shape).rstrip(", ") + ("," if len(shape) == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, "True" if fortran else "False", shp)
    pre = 10 if version == 1 else 12
    pad = (64 - (pre + len(header) + 1) % 64) % 64
    header = header + " " * pad + "\n"
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header.encode() + data


def npz(arrays, compressed=False):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as z:
        for name, blob in arrays:
            z.writestr(name + ".npy", blob)
    return buf.getvalue()


def floats(n, start=0.0):
    return b"".join(struct.pack("<f", start + i * 0.5) for i in range(n))


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    models = {}
    for m in MODELS:
        with open(os.path.join(TESTDATA, m, "model.onnx"), "rb") as f:
            models[m.split("/")[-1]] = f.read()
    with open(os.path.join(ROOT, "tests/fixtures/cnn_digits.onnx"), "rb") as f:
        models["cnn_digits"] = f.read()
    # Built here: initializers as raw_data, as float_data, symbolic dims, a string initializer.
    models["built_raw_and_typed"] = model(
        [node("Add", ["x", "w"], ["t"], "add"), node("Mul", ["t", "v"], ["y"], "mul")],
        [tensor("w", 1, [2, 3], raw=floats(6)), tensor("v", 1, [3], floats=[1.0, 2.0, 3.0])],
        [value_info("x", 1, ["batch", 3])], [value_info("y", 1, ["batch", 3])])
    models["built_external_self"] = model(
        [node("Identity", ["w"], ["y"], "id")],
        [tensor("w", 2, [4], external=[("location", "model.onnx"), ("offset", "0"), ("length", "4")])],
        [], [value_info("y", 2, [4])])
    for name, data in models.items():
        write("onnx_load", name + ".onnx", data)

    # random_feeds: u8 batch, u8 samples, u8 n, n x (u8 len + --shape text), model bytes.
    def feeds_seed(batch, samples, shapes, m):
        head = bytes([batch, samples, len(shapes)])
        for s in shapes:
            head += bytes([len(s)]) + s.encode()
        return head + m
    for name in ["test_if", "test_loop11", "test_conv_with_strides_no_padding", "test_gather_0", "test_Linear",
                 "test_Embedding", "test_lstm_with_initial_bias", "test_castlike_FLOAT_to_STRING",
                 "test_basic_convinteger", "test_sequence_insert_at_front", "cnn_digits", "built_raw_and_typed"]:
        write("random_feeds", name, feeds_seed(1, 2, [], models[name]))
    write("random_feeds", "shape_option", feeds_seed(3, 1, ["x=2x3"], models["built_raw_and_typed"]))
    write("random_feeds", "shape_option_bad", feeds_seed(0, 3, ["x=2xx3", "=1"], models["built_raw_and_typed"]))
    big = model([node("Relu", ["x"], ["y"], "r")], [], [value_info("x", 1, [1 << 20, 1 << 20, 1 << 20])],
                [value_info("y", 1, [1])])
    write("random_feeds", "huge_dims", feeds_seed(1, 1, [], big))

    # external_data, built mode: 0, dtype, rank, dims, location choice, flags, [offset/length], data.
    def ext_seed(dtype, dims, choice, flags, tail, numbers=()):
        b = bytes([0, dtype, len(dims)]) + bytes(dims) + bytes([choice, flags])
        for n in numbers:
            b += struct.pack("<I", n) if not flags & 4 else bytes([len(n)]) + n.encode()
        return b + tail
    write("external_data", "float_2x3", ext_seed(1, [2, 3], 0, 8 | 1 | 2, floats(6), (0, 24)))
    write("external_data", "float_offset", ext_seed(1, [4], 0, 8 | 1 | 2, b"\0" * 8 + floats(4), (8, 16)))
    write("external_data", "int8_nolength", ext_seed(3, [5], 0, 8, bytes(range(5))))
    write("external_data", "escape", ext_seed(1, [2], 1, 8, floats(2)))
    write("external_data", "absolute", ext_seed(1, [2], 2, 8, floats(2)))
    write("external_data", "link_out", ext_seed(1, [2], 3, 8, floats(2)))
    write("external_data", "subdir_back", ext_seed(1, [2], 4, 8, floats(2)))
    write("external_data", "missing", ext_seed(1, [2], 5, 8, floats(2)))
    write("external_data", "folder", ext_seed(1, [2], 7, 8, floats(2)))
    write("external_data", "short", ext_seed(1, [16], 0, 8, floats(2)))
    write("external_data", "two_tensors", ext_seed(10, [3], 0, 8 | 16 | 1 | 2, b"\0" * 6, (0, 6)))
    write("external_data", "text_numbers", ext_seed(1, [1], 0, 8 | 4 | 1 | 2, floats(1), ("0", "4")))
    write("external_data", "bad_numbers", ext_seed(1, [1], 0, 8 | 4 | 1 | 2, floats(1), ("-1", "4x")))
    write("external_data", "huge_dim", ext_seed(1, [254, 254], 0, 8, floats(4)))
    write("external_data", "negative_dim", ext_seed(1, [255], 0, 8, floats(4)))
    write("external_data", "custom_location", ext_seed(1, [1], 200, 8, floats(1))[:-4] + bytes([5]) + b"w.bin" + floats(1))
    write("external_data", "string_dtype", ext_seed(8, [1], 0, 8, b"abcd"))
    # raw mode: 1, u32 n, model bytes, data.
    raw_model = model([node("Identity", ["w"], ["y"], "id")],
                      [tensor("w", 1, [2, 2], external=[("location", "w.bin"), ("offset", "4"), ("length", "16")])],
                      [], [value_info("y", 1, [2, 2])])
    write("external_data", "raw_model", b"\x01" + struct.pack("<I", len(raw_model)) + raw_model + b"\0" * 4 + floats(4))

    # npz: the small fixtures, then archives written here.
    for f in ["cnn_digits_expected.npz", "lm_calib.npz"]:
        with open(os.path.join(ROOT, "tests/fixtures", f), "rb") as src:
            write("npz", f, src.read())
    write("npz", "float_2x4", npz([("x", npy("<f4", [2, 4], floats(8)))]))
    write("npz", "compressed", npz([("x", npy("<f4", [3, 2], floats(6))), ("label", npy("<i8", [3], struct.pack("<3q", 1, 2, 0)))], True))
    write("npz", "dtypes", npz([("a", npy("|u1", [3], b"\1\2\3")), ("b", npy("|i1", [2], b"\xff\1")),
                                ("c", npy("<i4", [2], struct.pack("<2i", -1, 7))), ("d", npy("<f8", [1], struct.pack("<d", 2.5))),
                                ("e", npy("<f2", [2], b"\0\x3c\0\x40")), ("f", npy("|b1", [2], b"\0\1")),
                                ("g", npy("<u2", [1], b"\1\0")), ("h", npy("<i2", [1], b"\1\0"))]))
    write("npz", "scalar_and_empty", npz([("s", npy("<f4", [], floats(1))), ("z", npy("<f4", [0, 5], b""))]))
    write("npz", "fortran", npz([("x", npy("<f4", [2, 2], floats(4), fortran=True))]))
    write("npz", "big_endian", npz([("x", npy(">f4", [2], floats(2)))]))
    write("npz", "unicode", npz([("x", npy("<U3", [1], b"a\0\0\0b\0\0\0c\0\0\0"))]))
    write("npz", "version2", npz([("x", npy("<f4", [2], floats(2), version=2))]))
    write("npz", "short_data", npz([("x", npy("<f4", [100], floats(2)))]))
    write("npz", "huge_shape", npz([("x", npy("<f4", [1 << 40, 1 << 40], floats(2)))]))

    # recipe: JSON, then optionally "\n--set\n" and KEY=VALUE lines. The folder holds
    # model.onnx (x[1,4] -> Relu -> y) and data.npz (x: 2 samples).
    recipes = {
        "convert": '{"input": "model.onnx", "output": "out/m.onnx", "steps": [{"pass": "cleanup"}]}',
        "demo_like": '{"description": "d", "input": "model.onnx", "output": "out/m.onnx", "external_data": "always",'
                     ' "steps": [{"pass": "cleanup", "options": {"remove-dropout": true, "dedupe-initializers": true}},'
                     ' {"pass": "evaluate", "options": {"data": "data.npz", "batch-size": 2,'
                     ' "goals": ["accuracy:max-degradation:0.005", "top1_agreement:threshold:0.99"], "report": "r.md"}}]}',
        "quantize": '{"input": "model.onnx", "output": "q.onnx", "steps": [{"pass": "quantize", "options":'
                    ' {"mode": "int4-weight", "algorithm": "gptq", "block-size": 32, "calib-data": "data.npz"}}]}',
        "quant_static": '{"input": "model.onnx", "output": "q.onnx", "steps": [{"pass": "quantize", "options":'
                        ' {"mode": "int8-static", "calib-data": "data.npz", "max-degradation": "accuracy:1%", "eval-data": "data.npz"}}]}',
        "set_options": '{"input": "model.onnx", "output": "o.onnx", "steps": [{"pass": "cleanup", "name": "c"}]}'
                       "\n--set\nsteps.0.options.subgraphs=false\noutput=/tmp/x.onnx\nsteps.0.pass=cleanup",
        "set_bad": '{"input": "model.onnx", "output": "o.onnx", "steps": [{"pass": "cleanup"}]}'
                   "\n--set\nsteps.7.pass=x\n=1\nsteps..a=2\ninput=[1,2]",
        "syntax": '{"input": "model.onnx", "output": "out.onnx", "steps": [ {"pass": "cleanup",, } ]}',
        "unknown_pass": '{"input": "model.onnx", "output": "out.onnx", "steps": [{"pass": "cleanpu"}]}',
        "wrong_type": '{"input": "model.onnx", "output": "out.onnx", "steps": [{"pass": "cleanup", "options": {"remove-identity": "yes"}}]}',
        "eval_first": '{"input": "model.onnx", "output": "o.onnx", "steps": [{"pass": "evaluate", "options": {"data": "data.npz"}}, {"pass": "cleanup"}]}',
        "not_object": '[1, 2, 3]',
        "types": '{"input": 5, "output": null, "external_data": "sometimes", "steps": {"pass": 1}, "x": [true]}',
        "deep": '{"input": "model.onnx", "output": "o.onnx", "steps": [{"pass": "cleanup", "options": {"a": [[[[[[{}]]]]]]}}]}',
    }
    for name, text in recipes.items():
        write("recipe", name + ".json", text.encode())
    for f in os.listdir(os.path.join(ROOT, "recipes")):
        with open(os.path.join(ROOT, "recipes", f), "rb") as src:
            write("recipe", "repo_" + f, src.read())


if __name__ == "__main__":
    main()
