#!/usr/bin/env bash
# compare.sh [--slmops PATH] [--keep DIR] [TEMPLATE_NAME...]
# Chat-template oracle: renders every template in templates.txt (or only those named) for every
# conversations/*.json, with and without add_generation_prompt, plus the variants templates.txt
# asks for (tools/*.json as tools, --var values), with three renderers:
#   jinja2        render_jinja2.py: Python's jinja2 set up as transformers' apply_chat_template
#                 (THE reference)
#   hfjinja       @huggingface/jinja given the same context      (render_hfjinja.js)
#   transformers  transformers.js' apply_chat_template            (render_hfjinja.js)
# Disagreements between the oracles are listed ("DIFF ...") and counted, never fatal. jinja2's
# outcome must be the one expect.tsv names: raise_exception (exit 2), another render error
# (exit 3) or text (exit 0, for every case expect.tsv does not list); otherwise "FAIL oracle".
# Then slmops (--slmops PATH, or $SLMOPS; skipped with a message when neither is given):
#   SLMOPS tokenize --tokenizer DIR --chat CONV [--add-generation-prompt] [--tools F] [--var N=J]...
# must print exactly jinja2's bytes (exit 0); where the template raises it must exit 2 with the
# message in its stderr; where jinja2 fails otherwise it must exit non-zero. For the cases with
# add_generation_prompt and no tools/--var that render, `... --ids` must print the ids
# transformers.js gives for jinja2's text encoded without special tokens ("N M ...\n"); for
# those of conversations/05_unicode_whitespace.json, `--chat -` reading stdin must print the
# same bytes as the file does.
# Prints "ok"/"FAIL" per slmops check, then "slmops: N/M equal" and "N passed, M failed" (these
# count the per-case jinja2-versus-expect.tsv checks too, which print only when they fail).
# Exit 0 when every check passes, 1 on any failure, 2 on a usage or set-up error.
# PYTHON (default /usr/bin/python3) must import jinja2 (Debian's python3-jinja2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
interop=$(cd "$here/.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
slmops=${SLMOPS:-}
keep=
names=()
usage() { echo "usage: compare.sh [--slmops PATH] [--keep DIR] [TEMPLATE_NAME...]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --slmops) [ $# -ge 2 ] || usage; slmops=$2; shift 2 ;;
    --keep) [ $# -ge 2 ] || usage; keep=$2; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "compare.sh: unknown option $1" >&2; usage ;;
    *) names+=("$1"); shift ;;
  esac
done
for n in "${names[@]}"; do
  grep -q "^${n}[[:space:]]" "$here/templates.txt" || { echo "compare.sh: no template named $n in templates.txt" >&2; exit 2; }
done
if ! "$PYTHON" -c 'import jinja2' 2>/dev/null; then
  echo "compare.sh: $PYTHON cannot import jinja2 (apt-get install python3-jinja2, or set PYTHON)" >&2
  exit 2
fi
if [ ! -d "$interop/node_modules/@huggingface/jinja" ] || [ ! -d "$interop/node_modules/@huggingface/transformers" ]; then
  echo "compare.sh: tests/interop is not installed (cd tests/interop && ONNXRUNTIME_NODE_INSTALL=skip npm ci)" >&2
  exit 2
fi
if [ -n "$slmops" ] && [ ! -x "$slmops" ]; then
  echo "compare.sh: slmops $slmops is not an executable file" >&2
  exit 2
fi

if [ -n "$keep" ]; then
  rm -rf "$keep"; mkdir -p "$keep"; tmp=$(cd "$keep" && pwd)
else
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fi
mkdir -p "$tmp/folders" "$tmp/ref" "$tmp/slm"

# --- the case list: ID DIR CONV AGP TOOLS [NAME=JSON]... (TAB-separated) ----------------------
convs=("$here"/conversations/*.json)
toolfiles=("$here"/tools/*.json)
cases=$tmp/cases.tsv
: > "$cases"
while read -r name dir opts; do
  case "$name" in ''|\#*) continue ;; esac
  if [ "${#names[@]}" -gt 0 ] && [[ " ${names[*]} " != *" $name "* ]]; then continue; fi
  src="$interop/$dir"
  [ -f "$src/tokenizer_config.json" ] || { echo "compare.sh: $name: no $src/tokenizer_config.json (npm ci?)" >&2; exit 2; }
  folder=$src
  with_tools=0
  vars=()
  named=()
  for o in $opts; do
    case "$o" in
      tools) with_tools=1 ;;
      var:*) vars+=("${o#var:}") ;;
      jinja:*)
        folder=$tmp/folders/$name; mkdir -p "$folder"
        ln -s "$src/tokenizer.json" "$folder/tokenizer.json"
        cp "$src/tokenizer_config.json" "$folder/"
        cp "$here/${o#jinja:}" "$folder/chat_template.jinja" ;;
      named:*) named+=("${o#named:}") ;;
      *) echo "compare.sh: $name: unknown option $o in templates.txt" >&2; exit 2 ;;
    esac
  done
  if [ "${#named[@]}" -gt 0 ]; then
    folder=$tmp/folders/$name; mkdir -p "$folder"
    ln -s "$src/tokenizer.json" "$folder/tokenizer.json"
    "$PYTHON" - "$src/tokenizer_config.json" "$folder/tokenizer_config.json" "$here" "${named[@]}" <<'EOF'
import json, os, sys
src, dst, here, specs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
cfg = json.load(open(src, encoding="utf-8"))
cfg["chat_template"] = []
for spec in specs:
    n, _, f = spec.partition("=")
    cfg["chat_template"].append({"name": n, "template": open(os.path.join(here, f), encoding="utf-8").read()})
json.dump(cfg, open(dst, "w", encoding="utf-8"), ensure_ascii=False, indent=2)
EOF
  fi
  for conv in "${convs[@]}"; do
    c=$(basename "$conv" .json)
    for agp in 0 1; do
      printf '%s\t%s\t%s\t%s\t-\n' "$name@$c@agp$agp" "$folder" "$conv" "$agp" >> "$cases"
      if [ "$with_tools" = 1 ]; then
        for tf in "${toolfiles[@]}"; do
          printf '%s\t%s\t%s\t%s\t%s\n' "$name@$c@agp$agp@tools-$(basename "$tf" .json)" "$folder" "$conv" "$agp" "$tf" >> "$cases"
        done
      fi
      for v in "${vars[@]}"; do
        printf '%s\t%s\t%s\t%s\t-\t%s\n' "$name@$c@agp$agp@$(printf '%s' "$v" | tr -c 'A-Za-z0-9_.=-' '_')" "$folder" "$conv" "$agp" "$v" >> "$cases"
      done
    done
  done
done < "$here/templates.txt"
ncases=$(wc -l < "$cases")
echo "matrix: $ncases cases ($(cut -f1 "$cases" | cut -d@ -f1 | sort -u | tr '\n' ' ')x ${#convs[@]} conversations x add_generation_prompt 0/1, plus tools/--var variants)"

# --- the oracles ----------------------------------------------------------------------------
if ! "$PYTHON" "$here/render_jinja2.py" --batch "$cases" "$tmp/ref" 2> "$tmp/stderr"; then
  echo "FAIL oracle: render_jinja2.py --batch failed:"; sed 's/^/    /' "$tmp/stderr" | head -20
  echo "0 passed, 1 failed"; exit 1
fi
idsfor=$tmp/ids_for.tsv
: > "$idsfor"
while IFS=$'\t' read -r id dir conv agp tools rest; do
  if [ "$agp" = 1 ] && [ "$tools" = - ] && [ -z "${rest:-}" ] && [ "$(cat "$tmp/ref/$id.rc")" = 0 ]; then
    printf '%s\t%s\n' "$id" "$tmp/ref/$id.out" >> "$idsfor"
  fi
done < "$cases"
if ! (cd "$here" && node render_hfjinja.js --batch "$cases" "$tmp/ref" --ids-for "$idsfor") 2> "$tmp/stderr"; then
  echo "FAIL oracle: render_hfjinja.js --batch failed (is tests/interop installed?):"; sed 's/^/    /' "$tmp/stderr" | head -20
  echo "0 passed, 1 failed"; exit 1
fi

# expect.tsv: TEMPLATE CONVERSATION raise|error TEXT (TEXT: what jinja2's stderr contains)
declare -A expect_kind expect_text
while IFS=$'\t' read -r t c k m; do
  case "$t" in ''|\#*) continue ;; esac
  expect_kind["$t@$c"]=$k; expect_text["$t@$c"]=$m
done < "$here/expect.tsv"

passed=0 failed=0 equal=0 compared=0
n_raise=0 n_error=0 n_text=0
declare -A agree=([hfjinja]=0 [tjs]=0)
declare -A differ=([hfjinja]=0 [tjs]=0)
fail() { echo "FAIL $1"; [ -n "${2:-}" ] && [ -s "$2" ] && head -n 8 "$2"; failed=$((failed + 1)); }
ok() { echo "ok   $1"; passed=$((passed + 1)); }
# contains FILE TEXT: FILE holds TEXT (fixed string)
contains() { grep -qF -- "$2" "$1"; }

# outcome[id] = text|raise|error as jinja2 had it; msg for raise
declare -A outcome
while IFS=$'\t' read -r id dir conv agp tools rest; do
  IFS=@ read -r tname cname _ <<< "$id"
  rc=$(cat "$tmp/ref/$id.rc")
  key="$tname@$cname"
  want=${expect_kind[$key]:-text}
  case "$rc" in 0) got=text ;; 2) got=raise ;; 3) got=error ;; *) got="usage error (exit $rc)" ;; esac
  if [ "$got" != "$want" ] || { [ "$want" != text ] && ! contains "$tmp/ref/$id.err" "${expect_text[$key]:-}"; }; then
    sed 's/^/    jinja2: /' "$tmp/ref/$id.err" > "$tmp/why"
    fail "oracle $id: jinja2 gave $got, expect.tsv says $want${expect_text[$key]:+ (${expect_text[$key]})}" "$tmp/why"
  else
    passed=$((passed + 1))  # counted, not printed: one per case
  fi
  outcome[$id]=$got
  case "$got" in text) n_text=$((n_text + 1)) ;; raise) n_raise=$((n_raise + 1)) ;; *) n_error=$((n_error + 1)) ;; esac
  # oracle agreement: same bytes for text; non-zero exit (with the message for raise) otherwise
  for o in hfjinja tjs; do
    orc=$(cat "$tmp/ref/$id.$o.rc")
    same=0
    if [ "$got" = text ]; then
      [ "$orc" = 0 ] && cmp -s "$tmp/ref/$id.out" "$tmp/ref/$id.$o.out" && same=1
    elif [ "$got" = raise ]; then
      [ "$orc" != 0 ] && contains "$tmp/ref/$id.$o.err" "$(head -n 1 "$tmp/ref/$id.err")" && same=1
    else
      [ "$orc" != 0 ] && same=1
    fi
    if [ "$same" = 1 ]; then
      agree[$o]=$((agree[$o] + 1))
    else
      differ[$o]=$((differ[$o] + 1))
      label=$([ "$o" = tjs ] && echo transformers.js || echo @huggingface/jinja)
      if [ "$got" = text ] && [ "$orc" = 0 ]; then
        echo "DIFF $label $id: text differs from jinja2's"
        "$PYTHON" "$here/show_diff.py" text "$tmp/ref/$id.out" "$tmp/ref/$id.$o.out" | sed 's/got:     /'"$o"':/; s/expected:/jinja2:  /' || true
      elif [ "$got" = text ]; then
        echo "DIFF $label $id: jinja2 renders, $label fails: $(head -c 300 "$tmp/ref/$id.$o.err" | head -n 1)"
      else
        echo "DIFF $label $id: jinja2 $got ($(head -c 200 "$tmp/ref/$id.err" | head -n 1)), $label exit $orc$([ "$orc" = 0 ] && echo ' (rendered)' || echo ": $(head -c 200 "$tmp/ref/$id.$o.err" | head -n 1)")"
      fi
    fi
  done
  [ -f "$tmp/ref/$id.ids.note" ] && echo "DIFF transformers.js $id ids: $(cat "$tmp/ref/$id.ids.note")"
done < "$cases"
echo "jinja2: $n_text rendered, $n_raise raise_exception, $n_error other errors"
echo "oracles: @huggingface/jinja agrees with jinja2 on ${agree[hfjinja]}/$ncases, transformers.js on ${agree[tjs]}/$ncases"

# --- slmops ---------------------------------------------------------------------------------
if [ -z "$slmops" ]; then
  echo "slmops: skipped (give --slmops PATH or set SLMOPS to check slmops tokenize --chat)"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
fi
stdin_conv=05_unicode_whitespace.json
while IFS=$'\t' read -r id dir conv agp tools rest; do
  args=(--tokenizer "$dir" --chat "$conv")
  [ "$agp" = 1 ] && args+=(--add-generation-prompt)
  [ "$tools" != - ] && args+=(--tools "$tools")
  if [ -n "${rest:-}" ]; then
    IFS=$'\t' read -r -a vs <<< "$rest"
    for v in "${vs[@]}"; do args+=(--var "$v"); done
  fi
  out=$tmp/slm/$id.out err=$tmp/slm/$id.err
  rc=0
  "$slmops" tokenize "${args[@]}" > "$out" 2> "$err" < /dev/null || rc=$?
  compared=$((compared + 1))
  got=${outcome[$id]}
  cmdline="    $slmops tokenize ${args[*]}"
  case "$got" in
    text)
      if [ "$rc" -ne 0 ]; then
        { echo "$cmdline"; echo "    slmops exited $rc:"; head -n 5 "$err" | sed 's/^/    /'; } > "$tmp/why"
        fail "$id" "$tmp/why"
      elif "$PYTHON" "$here/show_diff.py" text "$tmp/ref/$id.out" "$out" > "$tmp/why"; then
        ok "$id"; equal=$((equal + 1))
      else
        echo "$cmdline" >> "$tmp/why"; fail "$id" "$tmp/why"
      fi ;;
    raise)
      msg=$(head -n 1 "$tmp/ref/$id.err")
      if [ "$rc" -eq 2 ] && contains "$err" "$msg"; then
        ok "$id (raises)"; equal=$((equal + 1))
      else
        { echo "$cmdline"; echo "    expected exit 2 and stderr containing: $msg"; echo "    got exit $rc, stderr:"; head -n 5 "$err" | sed 's/^/    /'; } > "$tmp/why"
        fail "$id (raises)" "$tmp/why"
      fi ;;
    *)
      if [ "$rc" -ne 0 ]; then
        ok "$id (render error)"; equal=$((equal + 1))
      else
        { echo "$cmdline"; echo "    jinja2 fails here ($(head -n 1 "$tmp/ref/$id.err")); slmops exited 0"; } > "$tmp/why"
        fail "$id (render error)" "$tmp/why"
      fi ;;
  esac
  # --chat - (stdin): one conversation per template, same bytes required
  if [ "$got" = text ] && [ "$(basename "$conv")" = "$stdin_conv" ] && [ "$agp" = 1 ] && [ "$tools" = - ] && [ -z "${rest:-}" ]; then
    sargs=("${args[@]}")
    sargs[3]=-
    rc=0
    "$slmops" tokenize "${sargs[@]}" > "$out.stdin" 2> "$err" < "$conv" || rc=$?
    compared=$((compared + 1))
    if [ "$rc" -ne 0 ]; then
      { echo "    $slmops tokenize ${sargs[*]} < $conv"; echo "    slmops exited $rc:"; head -n 5 "$err" | sed 's/^/    /'; } > "$tmp/why"
      fail "$id --chat - (stdin)" "$tmp/why"
    elif "$PYTHON" "$here/show_diff.py" text "$tmp/ref/$id.out" "$out.stdin" > "$tmp/why"; then
      ok "$id --chat - (stdin)"; equal=$((equal + 1))
    else
      echo "    $slmops tokenize ${sargs[*]} < $conv" >> "$tmp/why"; fail "$id --chat - (stdin)" "$tmp/why"
    fi
  fi
  if [ -f "$tmp/ref/$id.ids" ]; then
    rc=0
    "$slmops" tokenize "${args[@]}" --ids > "$out.ids" 2> "$err" < /dev/null || rc=$?
    compared=$((compared + 1))
    if [ "$rc" -ne 0 ]; then
      { echo "$cmdline --ids"; echo "    slmops exited $rc:"; head -n 5 "$err" | sed 's/^/    /'; } > "$tmp/why"
      fail "$id --ids" "$tmp/why"
    elif cmp -s "$tmp/ref/$id.ids" "$out.ids"; then
      ok "$id --ids"; equal=$((equal + 1))
    else
      "$PYTHON" "$here/show_diff.py" ids "$tmp/ref/$id.ids" "$out.ids" > "$tmp/why" || true
      if "$PYTHON" "$here/show_diff.py" ids "$tmp/ref/$id.ids" "$out.ids" > /dev/null; then
        echo "    (same ids, other spacing: want single spaces and one final newline)" >> "$tmp/why"
      fi
      echo "$cmdline --ids" >> "$tmp/why"
      fail "$id --ids" "$tmp/why"
    fi
  fi
done < "$cases"
echo "slmops: $equal/$compared equal"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
