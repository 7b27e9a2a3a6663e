#!/usr/bin/env bash
# A stand-in for `slmops tokenize` built on ref_tokenize.js, to check compare.sh itself:
#   compare.sh ./fake_slmops.sh                      must pass every check
#   FAKE_SLMOPS_BREAK=id compare.sh ./fake_slmops.sh  changes one id of every encode: encode
#                                                     and encode-json checks must fail
#   FAKE_SLMOPS_BREAK=text ...                        appends a byte to every decode
#   FAKE_SLMOPS_BREAK=exit ...                        exits 3 with a message
# Usage as slmops: fake_slmops.sh tokenize --tokenizer T [--json] [--decode [--skip-special]]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ "${1:-}" = tokenize ] || { echo "fake_slmops: only 'tokenize'" >&2; exit 2; }
shift
tok= json=0 decode=0 skip=
while [ $# -gt 0 ]; do
  case "$1" in
    --tokenizer) tok=$2; shift ;;
    --json) json=1 ;;
    --decode) decode=1 ;;
    --skip-special) skip=--skip-special ;;
    *) echo "fake_slmops: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -f "$tok" ] && tok=$(dirname "$tok")
brk=${FAKE_SLMOPS_BREAK:-}
if [ "$brk" = exit ]; then echo "fake_slmops: broken on purpose" >&2; exit 3; fi
if [ $decode = 1 ]; then
  node "$here/ref_tokenize.js" "$tok" decode - $skip
  if [ "$brk" = text ]; then printf 'X'; fi
elif [ $json = 1 ]; then
  if [ "$brk" = id ]; then node "$here/ref_tokenize.js" "$tok" encode-json - | sed -E 's/"ids":\[([0-9]+)/"ids":[7\1/'
  else node "$here/ref_tokenize.js" "$tok" encode-json -; fi
else
  if [ "$brk" = id ]; then node "$here/ref_tokenize.js" "$tok" encode - | awk '{ if (NF > 3) $3 = $3 + 1; print }'
  else node "$here/ref_tokenize.js" "$tok" encode -; fi
fi
