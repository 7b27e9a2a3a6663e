#!/usr/bin/env python3
"""Runs a release slmops binary on many kinds of bad input and writes what it did (command,
exit code, first stderr line) as a Markdown table into docs/reliability.md, between the
bad-input-survey markers. The contract (README "Exit codes"): bad input exits 2 with one
`slmops: error:` line naming the file or option; an I/O failure the user cannot fix by
editing the input exits 1. A row that breaks the contract (a crash, a hang, a message
without `slmops: error:`, another exit code, several lines) is marked "open".

Usage: python3 tests/fuzz/bad_input_survey.py SLMOPS_BINARY [--doc docs/reliability.md]
"""
import os
import shlex
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import make_corpus as mc  # noqa: E402  (protobuf / npy builders)

TESTDATA = "/usr/share/libonnx-testdata/data"


def main():
    binary = os.path.abspath(sys.argv[1])
    doc = os.path.join(ROOT, "docs/reliability.md")
    if "--doc" in sys.argv:
        doc = sys.argv[sys.argv.index("--doc") + 1]
    work = tempfile.mkdtemp(prefix="slmops-survey-")
    os.chdir(work)
    rows = []

    def put(name, data):
        mode = "w" if isinstance(data, str) else "wb"
        with open(name, mode) as f:
            f.write(data)
        return name

    def case(kind, args, expect=(2,), timeout=20, note=""):
        """expect: the exit codes the contract allows here. 2: one `slmops: error:` line;
        1: the last line is `slmops: error:` (work and its log lines may come first);
        0: accepted (the input is not wrong for this command)."""
        cmd = [binary] + args
        shown = "slmops " + " ".join(shlex.quote(a) if len(a) < 60 else shlex.quote(a[:20] + "...") for a in args)
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
            rc = p.returncode
            err = p.stderr.decode(errors="replace").strip().splitlines()
        except subprocess.TimeoutExpired:
            rc, err = "timeout", [f"(no exit within {timeout} s)"]
        errors = [l for l in err if l.startswith("slmops: error: ")]
        shown_line = errors[0] if errors else (err[-1] if err else "(nothing on stderr)")
        if len(shown_line) > 170:
            shown_line = shown_line[:167] + "..."
        if rc == 2:
            ok = 2 in expect and len(err) == 1 and len(errors) == 1
        elif rc == 1:
            ok = 1 in expect and bool(err) and err[-1].startswith("slmops: error: ")
        elif rc == 0:
            ok = 0 in expect
        else:
            ok = False
        if isinstance(rc, int) and rc < 0:
            rc = f"signal {-rc}"
        verdict = "" if ok else "open"
        if not ok and rc == 2 and len(err) > 1:
            verdict = f"open ({len(err)} lines)"
        rows.append((kind, shown, rc, shown_line, " ".join(x for x in (verdict, note) if x)))

    model_src = os.path.join(TESTDATA, "pytorch-operator/test_operator_conv/model.onnx")
    model = open(model_src, "rb").read()
    put("model.onnx", model)
    good_npz = os.path.join(ROOT, "tests/fixtures/cnn_digits_test.npz")
    digits = os.path.join(ROOT, "tests/fixtures/cnn_digits.onnx")
    put("digits.onnx", open(digits, "rb").read())

    # --- model files ---
    case("empty file", ["convert", put("empty.onnx", b""), "-o", "out.onnx"])
    case("random bytes (4 KiB)", ["convert", put("random.onnx", os.urandom(4096)), "-o", "out.onnx"])
    case("truncated model (half)", ["convert", put("half.onnx", model[: len(model) // 2]), "-o", "out.onnx"])
    case("truncated model (last byte cut)", ["inspect", put("cut1.onnx", model[:-1])])
    case("zip magic (PyTorch .pt) as model", ["convert", put("ckpt.onnx", b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + os.urandom(100)), "-o", "out.onnx"])
    case("GGUF file as model", ["inspect", put("llama.onnx", b"GGUF\x03\x00\x00\x00" + bytes(64))])
    case("safetensors file as model", ["inspect", put("w.onnx", struct.pack("<Q", 27) + b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' + bytes(4))])
    case("JSON as model", ["convert", put("json.onnx", '{"input": "model.onnx"}'), "-o", "out.onnx"])
    case("model file missing", ["inspect", "nope.onnx"])
    os.makedirs("adir.onnx", exist_ok=True)
    case("model is a folder", ["inspect", "adir.onnx"])
    case("model is /dev/null", ["inspect", "/dev/null"])
    os.mkfifo("fifo.onnx")
    case("model is a FIFO (no writer)", ["inspect", "fifo.onnx"], timeout=10)
    long_name = "m" * 295 + ".onnx"
    case("300-char model file name", ["inspect", long_name])
    put("noread.onnx", model)
    os.chmod("noread.onnx", 0)
    case("model not readable (mode 000)", ["inspect", "noread.onnx"], expect=(0, 2) if os.geteuid() == 0 else (2,),
         note="run as root, which reads it anyway" if os.geteuid() == 0 else "")
    gpt_out = mc.value_info("y", 1, [1])
    case("ir_version 0, no graph", ["inspect", put("nograph.onnx", mc.f_varint(1, 0))])
    case("huge dims on an initializer (2^40 x 2^40, no data)",
         ["convert", put("huge.onnx", mc.model([mc.node("Identity", ["w"], ["y"], "n")], [mc.tensor("w", 1, [1 << 40, 1 << 40])], [], [gpt_out])), "-o", "out.onnx"])
    case("dims product overflows int64",
         ["inspect", put("ovf.onnx", mc.model([mc.node("Identity", ["w"], ["y"], "n")], [mc.tensor("w", 1, [1 << 62, 8, 8], raw=bytes(4))], [], [gpt_out]))])
    case("negative dim on an initializer",
         ["inspect", put("neg.onnx", mc.model([mc.node("Identity", ["w"], ["y"], "n")], [mc.tensor("w", 1, [-3], raw=bytes(12))], [], [gpt_out]))])
    case("raw_data shorter than the shape",
         ["convert", put("short_raw.onnx", mc.model([mc.node("Identity", ["w"], ["y"], "n")], [mc.tensor("w", 1, [100], raw=bytes(8))], [], [gpt_out])), "-o", "out.onnx"])
    case("unknown data_type 99 on an initializer",
         ["convert", put("dtype99.onnx", mc.model([mc.node("Identity", ["w"], ["y"], "n")], [mc.tensor("w", 99, [2], raw=bytes(8))], [], [gpt_out])), "-o", "out.onnx"], expect=(0, 2),
         note="kept as an opaque tensor (lossless round trip)")
    case("graph with a cycle",
         ["convert", put("cycle.onnx", mc.model([mc.node("Relu", ["b"], ["a"], "n1"), mc.node("Relu", ["a"], ["b"], "n2")], [], [], [mc.value_info("a", 1, [1])])), "-o", "out.onnx"])
    case("node reads an undefined value",
         ["convert", put("undef.onnx", mc.model([mc.node("Relu", ["nothing"], ["y"], "n")], [], [], [gpt_out])), "-o", "out.onnx"], expect=(0, 2),
         note="accepted: convert does not check that inputs are defined")
    case("two initializers with one name",
         ["convert", put("dupe.onnx", mc.model([mc.node("Identity", ["w"], ["y"], "n")], [mc.tensor("w", 1, [1], raw=bytes(4)), mc.tensor("w", 1, [2], raw=bytes(8))], [], [gpt_out])), "-o", "out.onnx"])
    # If nested 200 deep (protobuf's default recursion limit is 100).
    g = mc.f_bytes(2, "g0") + mc.f_bytes(12, mc.value_info("y", 1, [1]))
    for i in range(200):
        attr = mc.f_bytes(1, "then_branch") + mc.f_bytes(6, g) + mc.f_varint(20, 5)
        n = mc.f_bytes(1, "c") + mc.f_bytes(2, "y") + mc.f_bytes(4, "If") + mc.f_bytes(5, attr)
        g = mc.f_bytes(1, n) + mc.f_bytes(2, f"g{i}") + mc.f_bytes(12, mc.value_info("y", 1, [1]))
    case("If subgraphs nested 200 deep", ["inspect", put("deep.onnx", mc.f_varint(1, 8) + mc.f_bytes(7, g) + mc.f_bytes(8, mc.f_varint(2, 17)))])

    # --- external data ---
    os.makedirs("ext", exist_ok=True)
    os.makedirs("ext/sub", exist_ok=True)
    put("ext/secret.bin", bytes(16))
    put("ext/w.bin", bytes(16))
    put("secret.bin", bytes(16))

    def ext_model(name, kv):
        return put(name, mc.model([mc.node("Identity", ["w"], ["y"], "n")], [mc.tensor("w", 1, [4], external=kv)], [], [mc.value_info("y", 1, [4])]))
    case("external data outside the model folder", ["inspect", ext_model("ext/escape.onnx", [("location", "../secret.bin")])])
    case("external data absolute path", ["convert", ext_model("ext/abs.onnx", [("location", os.path.join(work, "secret.bin"))]), "-o", "out.onnx"])
    case("external data file missing", ["convert", ext_model("ext/missing.onnx", [("location", "nope.bin")]), "-o", "out.onnx"])
    case("external data file too short", ["convert", ext_model("ext/short.onnx", [("location", "w.bin"), ("offset", "8")]), "-o", "out.onnx"])
    os.symlink("../secret.bin", "ext/link.bin")
    case("external data through a symlink out", ["inspect", ext_model("ext/link.onnx", [("location", "link.bin")])])
    case("external data offset not a number", ["inspect", ext_model("ext/badoff.onnx", [("location", "w.bin"), ("offset", "12abc")])])
    case("external data offset 2^64-1", ["inspect", ext_model("ext/bigoff.onnx", [("location", "w.bin"), ("offset", "18446744073709551615")])])
    case("external data location empty", ["inspect", ext_model("ext/empty.onnx", [("location", "")])])
    case("external data location is a folder", ["inspect", ext_model("ext/dir.onnx", [("location", "sub")])])
    case("external data location is /dev/zero (absolute)", ["inspect", ext_model("ext/zero.onnx", [("location", "/dev/zero")])])

    # --- outputs ---
    case("-o names a folder", ["convert", "model.onnx", "-o", "adir.onnx"])
    os.mkfifo("out.fifo")
    case("-o names a FIFO", ["convert", "model.onnx", "-o", "out.fifo"], timeout=10)
    case("-o in a missing folder", ["convert", "model.onnx", "-o", "missing/out.onnx"])
    case("-o under /proc (unwritable)", ["convert", "model.onnx", "-o", "/proc/out.onnx"])
    case("-o /dev/full (a device, disk full on write)", ["convert", "model.onnx", "-o", "/dev/full"], expect=(1, 2))
    case("-o equals the input", ["convert", "model.onnx", "-o", "./model.onnx"])
    os.symlink("model.onnx", "alias.onnx")
    case("-o is a symlink to the input", ["convert", "model.onnx", "-o", "alias.onnx"])
    case("-o with a 300-char file name", ["convert", "model.onnx", "-o", "o" * 296 + ".onnx"])
    case("-o empty string", ["convert", "model.onnx", "-o", ""])

    # --- evaluation data (.npz) ---
    def ev(npz_name):
        return ["evaluate", "digits.onnx", "--data", npz_name]
    case("npz: not a zip", ev(put("bad.npz", b"not a zip at all")))
    case("npz: truncated", ev(put("trunc.npz", open(good_npz, "rb").read()[:5000])))
    case("npz: bad .npy magic", ev(put("magic.npz", mc.npz([("input", b"\x93NUMPX\x01\x00" + bytes(100))]))))
    case("npz: header not a dict", ev(put("hdr.npz", mc.npz([("input", b"\x93NUMPY\x01\x00\x0a\x00garbage!!\n")]))))
    case("npz: header length past the end", ev(put("hlen.npz", mc.npz([("input", b"\x93NUMPY\x01\x00\xff\xff{'descr'")]))))
    case("npz: Fortran order", ev(put("fortran.npz", mc.npz([("input", mc.npy("<f4", [1, 1, 8, 8], mc.floats(64), fortran=True))]))))
    case("npz: big-endian floats", ev(put("be.npz", mc.npz([("input", mc.npy(">f4", [1, 1, 8, 8], mc.floats(64)))]))))
    case("npz: huge shape, little data", ev(put("huge.npz", mc.npz([("input", mc.npy("<f4", [1 << 40, 1, 8, 8], mc.floats(4)))]))))
    case("npz: shape needs more bytes than stored", ev(put("shortnpy.npz", mc.npz([("input", mc.npy("<f4", [10, 1, 8, 8], mc.floats(64)))]))))
    case("npz: object dtype", ev(put("obj.npz", mc.npz([("input", mc.npy("|O", [1], bytes(8)))]))))
    case("npz: wrong array name for the model", ev(put("name.npz", mc.npz([("x", mc.npy("<f4", [1, 1, 8, 8], mc.floats(64)))]))))
    case("npz: wrong dtype for the model", ev(put("i64.npz", mc.npz([("input", mc.npy("<i8", [1, 1, 8, 8], bytes(512)))]))))
    case("data: unknown extension", ev(put("data.csv", "1,2,3\n")))
    case("jsonl: not JSON", ["evaluate", "digits.onnx", "--data", put("bad.jsonl", "{nope\n")])

    # --- evaluate --random ---
    rnd_in = lambda dims: mc.model([mc.node("Relu", ["x"], ["y"], "r")], [], [mc.value_info("x", 1, dims)], [mc.value_info("y", 1, dims)])
    case("--random, input dims 2^20 x 2^20 x 2^20", ["evaluate", put("bigin.onnx", rnd_in([1 << 20, 1 << 20, 1 << 20])), "--random"])
    case("--random, symbolic dim without --shape", ["evaluate", put("sym.onnx", rnd_in([1, "seq"])), "--random"])
    case("--random, --shape with a negative dim", ["evaluate", "sym.onnx", "--random", "--shape", "x=1x-5"])
    case("--random, --shape overflowing", ["evaluate", "sym.onnx", "--random", "--shape", "x=4294967296x4294967296"])

    # --- recipes ---
    def recipe(name, text, extra=()):
        file = "r_" + "".join(c if c.isalnum() else "_" for c in name) + ".json"
        case("recipe: " + name, ["run", put(file, text)] + list(extra))
    recipe("JSON syntax error", '{"input": "model.onnx", "output": "o.onnx", "steps": [ {"pass": "cleanup",, } ]}')
    recipe("not an object", "[1, 2]")
    recipe("unknown pass", '{"input": "model.onnx", "output": "o.onnx", "steps": [{"pass": "cleanpu"}]}')
    recipe("option of the wrong type", '{"input": "model.onnx", "output": "o.onnx", "steps": [{"pass": "cleanup", "options": {"remove-identity": "yes"}}]}')
    recipe("input missing", '{"input": "nope.onnx", "output": "o.onnx", "steps": [{"pass": "cleanup"}]}')
    recipe("input is a number", '{"input": 5, "output": "o.onnx", "steps": [{"pass": "cleanup"}]}')
    recipe("evaluate before a rewrite", '{"input": "model.onnx", "output": "o.onnx", "steps": [{"pass": "evaluate", "options": {"data": "bad.npz"}}, {"pass": "cleanup"}]}')
    recipe("--set on step 7 of 1", '{"input": "model.onnx", "output": "o.onnx", "steps": [{"pass": "cleanup"}]}', ["--set", "steps.7.pass=cleanup"])
    recipe("--set without =", '{"input": "model.onnx", "output": "o.onnx", "steps": [{"pass": "cleanup"}]}', ["--set", "steps"])
    recipe("nested 100000 deep", '{"input": "model.onnx", "output": "o.onnx", "steps": [{"pass": "cleanup", "options": {"x": ' + "[" * 100000 + "]" * 100000 + "}}]}")
    recipe("invalid UTF-8 in a key", b'{"input": "model.onnx", "output": "o.onnx", "st\xffps": []}')
    case("recipe: file is binary", ["run", put("bin.json", os.urandom(512))])

    # --- flags ---
    case("--threads -1", ["--threads", "-1", "inspect", "model.onnx"])
    case("--batch-size 0", ["evaluate", "digits.onnx", "--data", good_npz, "--batch-size", "0"])
    case("quantize --block-size 48", ["quantize", "digits.onnx", "-o", "q.onnx", "--mode", "int4-weight", "--block-size", "48"])
    case("unknown subcommand", ["frobnicate"])

    write_table(doc, rows)
    opened = sum(1 for r in rows if r[4].startswith("open"))
    print(f"{len(rows)} cases, {opened} open", file=sys.stderr)
    subprocess.run(["chmod", "-R", "u+rwx", work])
    subprocess.run(["rm", "-rf", work])


def write_table(doc, rows):
    lines = ["| # | bad input | command | exit | stderr (the error line) | verdict |", "|---|---|---|---|---|---|"]
    for i, (kind, cmd, rc, first, note) in enumerate(rows, 1):
        esc = lambda s: str(s).replace("|", "\\|").replace("`", "'")
        lines.append(f"| {i} | {esc(kind)} | `{esc(cmd)}` | {rc} | {esc(first)} | {note} |")
    table = "\n".join(lines) + "\n"
    text = open(doc).read() if os.path.exists(doc) else ""
    b, e = "<!-- bad-input-survey:begin -->", "<!-- bad-input-survey:end -->"
    if b in text and e in text:
        text = text[: text.index(b) + len(b)] + "\n" + table + text[text.index(e):]
        open(doc, "w").write(text)
    else:
        sys.stdout.write(table)


if __name__ == "__main__":
    main()
