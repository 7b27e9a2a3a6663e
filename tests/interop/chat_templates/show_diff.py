#!/usr/bin/python3
"""show_diff.py text|ids EXPECTED ACTUAL: prints where two outputs first differ (indented, a few
lines), exit 0 when equal, 1 when not. text: byte-wise, showing +-40 bytes of each around the
first difference as Python bytes literals; ids: space-separated id lines, the first differing
index with +-5 ids."""
import sys


def main(mode, exp_path, act_path):
    exp = open(exp_path, "rb").read()
    act = open(act_path, "rb").read()
    if exp == act:
        return 0
    if mode == "ids":
        e, a = exp.split(), act.split()
        i = 0
        while i < min(len(e), len(a)) and e[i] == a[i]:
            i += 1
        lo = max(0, i - 5)
        print("    %d ids expected, %d got; first difference at index %d" % (len(e), len(a), i))
        print("    expected[%d:]: %s" % (lo, b" ".join(e[lo:i + 6]).decode()))
        print("    got     [%d:]: %s" % (lo, b" ".join(a[lo:i + 6]).decode()))
        return 1
    i = 0
    while i < min(len(exp), len(act)) and exp[i] == act[i]:
        i += 1
    line = exp[:i].count(b"\n") + 1
    lo = max(0, i - 40)
    print("    %d bytes expected, %d got; first difference at byte %d (line %d)" % (len(exp), len(act), i, line))
    print("    expected: %r" % exp[lo:i + 40])
    print("    got:      %r" % act[lo:i + 40])
    return 1


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("text", "ids"):
        sys.stderr.write("usage: show_diff.py text|ids EXPECTED ACTUAL\n")
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
