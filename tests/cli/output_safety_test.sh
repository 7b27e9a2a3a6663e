#!/usr/bin/env bash
# Outputs are never torn and never replace special files (#18):
# - `-o` a FIFO or a character device is written through (the file stays what it was); with
#   external data beside it, refused with one line; `-o` a folder or a 300-character name:
#   exit 2, one line, nothing written.
# - Temporaries of killed runs are removed by the next write to the same output (unless a
#   live writer holds them).
# - SIGKILL at 20 random moments of a convert with external data over an existing output:
#   afterwards the output is always a complete pair, the old one or the new one (it loads and
#   re-serializes to exactly the bytes of one of them), never a mix.
# Usage: output_safety_test.sh SLMOPS MAKE_MODEL SOURCE_DIR
set -u
S=$(realpath "$1")
MAKE=$(realpath "$2")
SRC=$(realpath "$3")
. "$SRC/tests/cli/testlib.sh"
W=$(mktemp -d "${TMPDIR:-/tmp}/slmops-out-XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
cd "$W"
slm() { "$S" -q "$@" >/dev/null; }  # stdout (the written path) is not what is tested here
cp "$SRC/tests/regress/inputs/relu.onnx" relu.onnx
slm convert relu.onnx -o ref.onnx || { echo "FAIL setup"; exit 1; }

one_line_exit2() {  # COMMAND...: exit 2 and exactly one stderr line
  "$@" >/dev/null 2>err.txt
  local rc=$?
  [ "$rc" = 2 ] && [ "$(wc -l <err.txt)" = 1 ] || { echo "  exit $rc: $(cat err.txt)"; return 1; }
}

# --- FIFO: written through, still a FIFO ---------------------------------------------------
mkfifo fifo
cat fifo >from_fifo &
reader=$!
check "-o FIFO is written through" bash -c "timeout 20 '$S' -q convert relu.onnx -o fifo >/dev/null"
wait $reader
check "-o FIFO: the reader got the model's bytes" cmp -s from_fifo ref.onnx
check "-o FIFO: still a FIFO" test -p fifo
cp "$SRC/tests/regress/inputs/small_vocab_lm.onnx" lm.onnx  # its 1.4 KB table goes to external data
check "-o FIFO with external data: exit 2, one line" \
  one_line_exit2 timeout 20 "$S" -q convert lm.onnx -o fifo --external-data always
check "-o FIFO with external data: still a FIFO, no data file" bash -c 'test -p fifo && ! ls fifo.* 2>/dev/null | grep -q .'

# --- character device (a /dev/null made here with mknod, never the real one) --------------
if mknod nulldev c 1 3 2>/dev/null; then
  check "-o character device is written through" slm convert relu.onnx -o nulldev
  check "-o character device: still a character device" test -c nulldev
else
  echo "skip character device (mknod not permitted here)"
fi

# --- folder, long name ---------------------------------------------------------------------
mkdir adir
check "-o a folder: exit 2, one line" one_line_exit2 "$S" convert relu.onnx -o adir
check "-o a folder: still an empty folder" bash -c '[ -d adir ] && [ -z "$(ls -A adir)" ]'
long=$(printf 'x%.0s' $(seq 300)).onnx
check "-o a 300-character name: exit 2, one line" one_line_exit2 "$S" convert relu.onnx -o "$long"
check "-o a 300-character name: message says why" grep -q "limit of 255" err.txt

# --- -o naming the input's external data file: refused before any work ------------------
slm convert lm.onnx -o ext.onnx --external-data always || { echo "FAIL setup: ext"; exit 1; }
cp ext.onnx.data ext.data.before
check "-o the input's external data file: exit 2, one line" \
  one_line_exit2 "$S" convert ext.onnx -o ext.onnx.data --external-data never
check "... names the input's file" grep -q "is the input file" err.txt
check "... the data file is untouched" cmp -s ext.onnx.data ext.data.before
check "-o whose data file would be the input's: exit 2, one line" \
  one_line_exit2 "$S" quantize ext.onnx -o ext.onnx --mode int8-dynamic --allow-noop
rm -f ext.* lm.onnx

# --- stale temporaries of killed runs ------------------------------------------------------
echo partial >out.onnx.tmp-0123456789abcdef
echo partial >out.onnx.tmp-fedcba9876543210
flock out.onnx.tmp-fedcba9876543210 sleep 30 &
holder=$!
sleep 0.2
check "convert over stale temporaries" slm convert relu.onnx -o out.onnx
check "an unlocked stale temporary is removed" test ! -e out.onnx.tmp-0123456789abcdef
check "a temporary that a live writer holds is kept" test -e out.onnx.tmp-fedcba9876543210
kill $holder 2>/dev/null
wait $holder 2>/dev/null
rm -f out.onnx*

# --- SIGKILL during convert with external data --------------------------------------------
"$MAKE" a.onnx --mb 48 --external --seed 1 >/dev/null 2>&1 && "$MAKE" b.onnx --mb 48 --external --seed 2 >/dev/null 2>&1 ||
  { echo "FAIL setup: make_model"; exit 1; }
slm convert a.onnx -o ref_a.onnx --external-data never && slm convert b.onnx -o ref_b.onnx --external-data never ||
  { echo "FAIL setup: references"; exit 1; }
slm convert a.onnx -o out.onnx --external-data always || { echo "FAIL setup: old pair"; exit 1; }
start=$(date +%s%N)
slm convert b.onnx -o timing.onnx --external-data always
ns=$(( $(date +%s%N) - start ))
rm -f timing.onnx*
torn=0
for i in $(seq 20); do
  # Alternate the source so that every kill lands on an output whose old pair differs.
  src=b.onnx
  [ $((i % 2)) = 0 ] && src=a.onnx
  "$S" -q convert $src -o out.onnx --external-data always >/dev/null &
  pid=$!
  delay=$(awk -v s="$RANDOM" -v ns="$ns" 'BEGIN { srand(s); printf "%.4f", rand() * ns * 1.2 / 1e9 }')
  sleep "$delay"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  rm -f chk.onnx
  if ! slm convert out.onnx -o chk.onnx --external-data never >/dev/null 2>chk.err; then
    echo "  kill $i after ${delay}s: the output does not load: $(cat chk.err)"
    torn=$((torn + 1))
  elif ! cmp -s chk.onnx ref_a.onnx && ! cmp -s chk.onnx ref_b.onnx; then
    echo "  kill $i after ${delay}s: the output is neither the old nor the new model"
    torn=$((torn + 1))
  fi
done
check "20 SIGKILLs: the output is always a complete old or new pair" test $torn = 0
check "a complete run after the kills" slm convert a.onnx -o out.onnx --external-data always
check "... leaves only out.onnx and out.onnx.data" \
  bash -c '[ "$(ls out.onnx* | tr "\n" " ")" = "out.onnx out.onnx.data " ] || { ls out.onnx*; false; }'
check "... whose bytes are those of a fresh write" \
  bash -c "mkdir -p fresh && '$S' -q convert a.onnx -o fresh/out.onnx --external-data always >/dev/null &&
           cmp -s fresh/out.onnx.data out.onnx.data && cmp -s fresh/out.onnx out.onnx"
finish
