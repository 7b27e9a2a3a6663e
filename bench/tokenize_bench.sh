#!/usr/bin/env bash
# Encode throughput of `slmops tokenize` against transformers.js (the reference the interop
# test compares ids with), in one run, on the same text, one core each.
#
# Text: the tokenizer corpus (tests/interop/tokenizers/corpus/*.txt, license texts, C++ source,
# multilingual sample) repeated to about SIZE_MB megabytes for slmops and REF_MB for
# transformers.js (the same text, shorter: the reference runs at about 1 MB/s; throughput on
# a repeated corpus does not depend on the length). slmops: wall time of `slmops tokenize` on
# that file minus the wall time on an empty file (the tokenizer.json load), best of REPS.
# transformers.js: bench_ref.js's "cold" figure (its word cache cleared before each encode,
# so both read every word afresh) and its "warm" figure.
# Usage: bench/tokenize_bench.sh [SLMOPS] [TOKENIZER_NAME...]   (SIZE_MB=16, REF_MB=2, REPS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-build/slmops}
shift || true
SIZE_MB=${SIZE_MB:-16}
REF_MB=${REF_MB:-2}
REPS=${REPS:-3}
HERE=tests/interop/tokenizers
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(llama2 llama3 qwen3 gemma3 deepseek_v3 gptoss)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
: > "$WORK/text.txt"
while [ "$(stat -c %s "$WORK/text.txt")" -lt $((SIZE_MB * 1000000)) ]; do cat "$HERE"/corpus/*.txt >> "$WORK/text.txt"; done
: > "$WORK/empty.txt"
head -c $((REF_MB * 1000000)) "$WORK/text.txt" > "$WORK/ref.txt"
bytes=$(stat -c %s "$WORK/text.txt")
best() {  # best wall seconds of REPS runs of: slmops tokenize --tokenizer $1 < $2
  local b=999999
  for _ in $(seq "$REPS"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$S" tokenize --tokenizer "$1" < "$2" > /dev/null
    t1=$(date +%s.%N)
    b=$(echo "$t1 - $t0" | bc -l | awk -v b="$b" '{ print ($1 < b) ? $1 : b }')
  done
  echo "$b"
}
echo "| tokenizer | text MB | slmops load s | slmops MB/s | transformers.js cold MB/s | warm MB/s | slmops / cold | slmops / warm |"
echo "|---|---|---|---|---|---|---|---|"
for n in "${names[@]}"; do
  dir=tests/interop/$(awk -v n="$n" '$1 == n { print $2 }' "$HERE/tokenizers.txt")
  load=$(best "$dir" "$WORK/empty.txt")
  all=$(best "$dir" "$WORK/text.txt")
  ours=$(echo "$bytes / 1000000 / ($all - $load)" | bc -l)
  ref=$(cd tests/interop && node tokenizers/bench_ref.js "../../$dir" "$WORK/ref.txt" --min-seconds 2 | tail -1)
  cold=$(sed -n 's/.*cold \([0-9.]*\) MB\/s.*/\1/p' <<<"$ref")
  warm=$(sed -n 's/.*warm \([0-9.]*\) MB\/s.*/\1/p' <<<"$ref")
  printf '| %s | %.1f | %.2f | %.2f | %s | %s | %.1f | %.1f |\n' "$n" "$(echo "$bytes / 1000000" | bc -l)" "$load" "$ours" \
    "$cold" "$warm" "$(echo "$ours / $cold" | bc -l)" "$(echo "$ours / $warm" | bc -l)"
done
