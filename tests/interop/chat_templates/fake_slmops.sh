#!/usr/bin/env bash
# A stand-in for `slmops tokenize --chat` built on the reference renderer (render_jinja2.py) and,
# for --ids, transformers.js' encoder (render_hfjinja.js encode), to check compare.sh itself:
#   compare.sh --slmops ./fake_slmops.sh                       must pass every check
#   FAKE_SLMOPS_BREAK=text  ...  appends a byte to every rendered text: text checks fail
#   FAKE_SLMOPS_BREAK=ids   ...  adds 1 to the third id of every --ids line: --ids checks fail
#   FAKE_SLMOPS_BREAK=raise ...  exits 1 instead of 2 where the template raises
#   FAKE_SLMOPS_BREAK=error ...  exits 0 (no output) where jinja2 fails otherwise
# Usage as slmops: fake_slmops.sh tokenize --tokenizer DIR --chat FILE [--add-generation-prompt]
#                  [--ids] [--tools FILE] [--var NAME=JSON]...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
[ "${1:-}" = tokenize ] || { echo "fake_slmops: only 'tokenize'" >&2; exit 2; }
shift
args=() ids=0 tok=
while [ $# -gt 0 ]; do
  case "$1" in
    --ids) ids=1 ;;
    --tokenizer) tok=$2; args+=("$1" "$2"); shift ;;
    --chat|--tools|--var) args+=("$1" "$2"); shift ;;
    --add-generation-prompt) args+=("$1") ;;
    *) echo "fake_slmops: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
brk=${FAKE_SLMOPS_BREAK:-}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
"$PYTHON" "$here/render_jinja2.py" "${args[@]}" > "$out" || rc=$?
case "$rc" in
  0) ;;
  2) [ "$brk" = raise ] && exit 1; exit 2 ;;
  3) [ "$brk" = error ] && exit 0; exit 3 ;;
  *) exit "$rc" ;;
esac
if [ "$ids" = 1 ]; then
  if [ "$brk" = ids ]; then
    (cd "$here" && node render_hfjinja.js encode --tokenizer "$tok" "$out") | awk '{ if (NF >= 3) $3 = $3 + 1; print }'
  else
    (cd "$here" && node render_hfjinja.js encode --tokenizer "$tok" "$out")
  fi
else
  cat "$out"
  if [ "$brk" = text ]; then printf 'X'; fi
fi
