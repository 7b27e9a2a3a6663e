#!/usr/bin/env bash
# compare.sh SLMOPS [TOKENIZER_NAME...]
# Checks `SLMOPS tokenize` against the reference (ref_tokenize.js: Hugging Face transformers.js)
# for every tokenizer in tokenizers.txt (or only those named) and every corpus/*.txt:
#   encode       SLMOPS tokenize --tokenizer DIR < FILE           ids line equal to the reference's
#   encode-json  SLMOPS tokenize --tokenizer DIR --json < FILE    ids and tokens equal
#   decode       SLMOPS tokenize --tokenizer DIR --decode < IDS   text byte-equal (IDS = reference ids)
#   decode-skip  ... --decode --skip-special < IDS                likewise with special tokens skipped
# One "ok"/"FAIL" line per check (a FAIL is followed by indented details), then
# "N passed, M failed". Exit 0 when all pass, 1 otherwise, 2 on a usage or set-up error.
# Reference outputs are computed once per tokenizer into a temporary folder removed on exit.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
interop=$(cd "$here/.." && pwd)
if [ $# -lt 1 ]; then
  echo "usage: compare.sh SLMOPS [TOKENIZER_NAME...]" >&2
  exit 2
fi
slmops=$1; shift
only=" $* "
for n in "$@"; do
  if ! grep -q "^$n[[:space:]]" "$here/tokenizers.txt"; then
    echo "compare.sh: no tokenizer named $n in tokenizers.txt" >&2
    exit 2
  fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() {
  echo "FAIL $1"
  [ -n "${2:-}" ] && head -n 20 "$2"
  failed=$((failed + 1))
}

# run_slmops LABEL OUT STDIN ARGS...: runs slmops; on non-zero exit prints the FAIL line and
# returns 1.
run_slmops() {
  local label=$1 out=$2 in=$3; shift 3
  "$slmops" tokenize "$@" < "$in" > "$out" 2> "$tmp/stderr"
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "    slmops exited $rc: $slmops tokenize $*" > "$tmp/why"
    head -n 5 "$tmp/stderr" | sed 's/^/    /' >> "$tmp/why"
    bad "$label" "$tmp/why"
    return 1
  fi
}

mapfile -t files < <(ls "$here"/corpus/*.txt | sort)
while read -r name dir; do
  case "$name" in ''|\#*) continue ;; esac
  [ "$only" = "  " ] || [[ "$only" == *" $name "* ]] || continue
  tdir="$interop/$dir"
  ref="$tmp/ref/$name"
  if ! node "$here/ref_tokenize.js" "$tdir" batch "$ref" "${files[@]}" 2> "$tmp/stderr"; then
    sed 's/^/    /' "$tmp/stderr" > "$tmp/why"
    bad "$name: reference tokenizer failed (is tests/interop installed? ONNXRUNTIME_NODE_INSTALL=skip npm ci)" "$tmp/why"
    continue
  fi
  for f in "${files[@]}"; do
    b=$(basename "$f")
    label="$name $b"
    out="$tmp/out"
    if run_slmops "$label encode" "$out" "$f" --tokenizer "$tdir"; then
      if node "$here/diff_ids.js" ids "$ref/$b.json" "$out" > "$tmp/why"; then ok "$label encode"; else bad "$label encode" "$tmp/why"; fi
    fi
    if run_slmops "$label encode-json" "$out" "$f" --tokenizer "$tdir" --json; then
      if node "$here/diff_ids.js" json "$ref/$b.json" "$out" > "$tmp/why"; then ok "$label encode-json"; else bad "$label encode-json" "$tmp/why"; fi
    fi
    if run_slmops "$label decode" "$out" "$ref/$b.ids" --tokenizer "$tdir" --decode; then
      if node "$here/diff_ids.js" text "$ref/$b.dec" "$out" > "$tmp/why"; then ok "$label decode"; else bad "$label decode" "$tmp/why"; fi
    fi
    if run_slmops "$label decode-skip" "$out" "$ref/$b.ids" --tokenizer "$tdir" --decode --skip-special; then
      if node "$here/diff_ids.js" text "$ref/$b.skip.dec" "$out" > "$tmp/why"; then ok "$label decode-skip"; else bad "$label decode-skip" "$tmp/why"; fi
    fi
  done
done < "$here/tokenizers.txt"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
