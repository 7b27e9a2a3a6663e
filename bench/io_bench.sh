#!/usr/bin/env bash
# Model IO benchmark: how long `slmops convert --no-cleanup` (load + save, no graph work) takes
# next to a plain `cp` of the same files, and how much memory it needs.
#
# usage: bench/io_bench.sh [--mb 500] [--runs 3]
#
# Builds nothing: expects a built tree in $SLMOPS_BUILD (default ./build) holding slmops and
# bench/slmops_make_model. Generates one synthetic model with its weights as external data and
# one with them embedded, in a temporary folder under ${TMPDIR:-/tmp} (removed at exit), then
# for each variant and each of N runs times
#   (a) cp of the model file(s) to a new path in the same folder, and
#   (b) slmops -q convert MODEL -o OUT --no-cleanup, under /usr/bin/time -f %M for peak RSS.
# Both run against a warm page cache (the files were just written; dropping caches needs
# root); `sync` runs, untimed, before each measurement so earlier writeback does not land in
# it. Neither cp nor slmops calls fsync, so both times are "into the page cache".
# Prints a Markdown table of medians on stdout; progress and the per-run numbers on stderr.
# Fails (exit 1) when an output does not load (`slmops inspect --json`) or its data file is
# smaller than the input's. Missed targets are reported in the table, not as a failure.
set -euo pipefail

MB=500
RUNS=3
die() { echo "io_bench: error: $*" >&2; exit 1; }
say() { echo "io_bench: $*" >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --mb) [[ $# -ge 2 ]] || die "--mb needs a value"; MB="$2"; shift 2 ;;
    --runs) [[ $# -ge 2 ]] || die "--runs needs a value"; RUNS="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (usage: bench/io_bench.sh [--mb 500] [--runs 3])" ;;
  esac
done
[[ "$MB" =~ ^[0-9]+$ && "$MB" -gt 0 ]] || die "--mb must be a positive whole number, got '$MB'"
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -gt 0 ]] || die "--runs must be a positive whole number, got '$RUNS'"
[[ "$MB" -le 2000 ]] || die "--mb $MB: the embedded variant must stay under protobuf's 2 GiB limit; use 2000 or less"

BUILD="${SLMOPS_BUILD:-./build}"
SLMOPS="$BUILD/slmops"
MAKE_MODEL="$BUILD/bench/slmops_make_model"
[[ -x "$SLMOPS" ]] || die "$SLMOPS not found or not executable; build first (cd build && cmake .. -G Ninja && ninja) or set SLMOPS_BUILD"
[[ -x "$MAKE_MODEL" ]] || die "$MAKE_MODEL not found or not executable; build first (it is the bench/ target slmops_make_model) or set SLMOPS_BUILD"
TIME=/usr/bin/time
[[ -x "$TIME" ]] || die "$TIME not found: GNU time is needed for peak RSS; install the Debian package 'time' (apt-get install time)"
"$TIME" -f %M -o /dev/null true 2>/dev/null || die "$TIME does not take -f/-o (not GNU time?); install the Debian package 'time'"

TMP_BASE="${TMPDIR:-/tmp}"
WORK="$(mktemp -d "$TMP_BASE/slmops-io-bench.XXXXXX")" || die "cannot create a temporary folder under $TMP_BASE"
cleanup() { rm -rf -- "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Space: per variant the input, a cp copy and a slmops output, about 3 x MB each.
need_kib=$(( MB * 1024 * 7 ))
avail_kib=$(df -Pk "$WORK" | awk 'NR==2 {print $4}')
[[ "$avail_kib" -ge "$need_kib" ]] || die "$WORK has $((avail_kib / 1024)) MiB free; --mb $MB needs about $((need_kib / 1024)) MiB"

now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
fsize() { stat -c %s -- "$1"; }
# The files that make up a model: the .onnx and, when there is one, its .data.
model_files() { local f=("$1"); [[ -e "$1.data" ]] && f+=("$1.data"); printf '%s\n' "${f[@]}"; }
total_bytes() { local t=0 f; while IFS= read -r f; do t=$(( t + $(fsize "$f") )); done < <(model_files "$1"); echo "$t"; }

say "temporary folder $WORK"
say "slmops: $("$SLMOPS" --version)"
mkdir -p "$WORK/external" "$WORK/embedded"
"$MAKE_MODEL" "$WORK/external/model.onnx" --mb "$MB" --external --seed 1
"$MAKE_MODEL" "$WORK/embedded/model.onnx" --mb "$MB" --embedded --seed 1
[[ -s "$WORK/external/model.onnx.data" ]] || die "slmops_make_model --external wrote no model.onnx.data"
[[ ! -e "$WORK/embedded/model.onnx.data" ]] || die "slmops_make_model --embedded wrote a data file"

rows=()
misses=()
for variant in external embedded; do
  dir="$WORK/$variant"
  in="$dir/model.onnx"
  bytes=$(total_bytes "$in")
  mapfile -t files < <(model_files "$in")
  cp_times=() sl_times=() rss_kib=()
  for ((r = 1; r <= RUNS; r++)); do
    # (a) cp of the same files to a new path in the same folder
    rm -rf -- "$dir/cp" "$dir/out"
    mkdir -p "$dir/cp" "$dir/out"
    sync
    t0=$(now_ns)
    cp -- "${files[@]}" "$dir/cp/"
    t1=$(now_ns)
    cp_s=$(secs "$t0" "$t1")
    rm -rf -- "$dir/cp"
    # (b) slmops load + save
    sync
    t0=$(now_ns)
    "$TIME" -f %M -o "$dir/rss.txt" "$SLMOPS" -q convert "$in" -o "$dir/out/model.onnx" --no-cleanup >/dev/null \
      || die "$variant run $r: slmops convert failed"
    t1=$(now_ns)
    sl_s=$(secs "$t0" "$t1")
    rss=$(tail -n 1 "$dir/rss.txt")
    [[ "$rss" =~ ^[0-9]+$ ]] || die "$variant run $r: could not read peak RSS from $TIME (got '$rss')"
    # Checks (untimed): the output loads, and its weights are all there.
    out="$dir/out/model.onnx"
    "$SLMOPS" -q inspect "$out" --json >/dev/null || die "$variant run $r: output $out does not load (slmops inspect --json failed)"
    if [[ -e "$in.data" ]]; then
      [[ -e "$out.data" ]] || die "$variant run $r: input has $in.data but the output has no $out.data"
      in_d=$(fsize "$in.data"); out_d=$(fsize "$out.data")
      [[ "$out_d" -ge "$in_d" ]] || die "$variant run $r: output data file has $out_d bytes, fewer than the input's $in_d"
    else
      [[ ! -e "$out.data" ]] || die "$variant run $r: embedded input, but the output has a data file $out.data"
      in_m=$(fsize "$in"); out_m=$(fsize "$out")
      [[ "$out_m" -ge "$in_m" ]] || die "$variant run $r: output model has $out_m bytes, fewer than the input's $in_m"
    fi
    same="byte-identical"
    while IFS= read -r f; do
      cmp -s -- "$f" "$dir/out/$(basename -- "$f")" || same="differs from input"
    done < <(model_files "$in")
    say "$variant run $r/$RUNS: cp ${cp_s} s, slmops ${sl_s} s, peak RSS ${rss} KiB, output $same"
    cp_times+=("$cp_s") sl_times+=("$sl_s") rss_kib+=("$rss")
    rm -rf -- "$dir/out"
  done
  cp_med=$(median "${cp_times[@]}")
  sl_med=$(median "${sl_times[@]}")
  rss_med=$(median "${rss_kib[@]}")
  ratio=$(awk -v a="$sl_med" -v b="$cp_med" 'BEGIN { printf "%.2f", a / b }')
  rss_mib=$(awk -v k="$rss_med" 'BEGIN { printf "%.1f", k / 1024 }')
  rss_ratio=$(awk -v k="$rss_med" -v b="$bytes" 'BEGIN { printf "%.3f", k * 1024 / b }')
  time_ok=$(awk -v x="$ratio" 'BEGIN { print (x <= 1.5) ? "met" : "MISSED" }')
  if [[ "$variant" == external ]]; then
    rss_ok=$(awk -v x="$rss_ratio" 'BEGIN { print (x <= 1.3) ? "met" : "MISSED" }')
    target="time <= 1.5x: $time_ok; RSS <= 1.3x: $rss_ok"
    [[ "$rss_ok" == met ]] || misses+=("$variant: RSS/file size $rss_ratio > 1.3")
  else
    target="time <= 1.5x: $time_ok; RSS: no target"
  fi
  [[ "$time_ok" == met ]] || misses+=("$variant: time ratio $ratio > 1.5")
  rows+=("| $variant | $bytes | $cp_med | $sl_med | $ratio | $rss_mib | $rss_ratio | $target |")
done

echo "| variant | bytes | cp s | slmops s | slmops/cp | peak RSS MiB | RSS/file size | targets |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
printf '%s\n' "${rows[@]}"
echo
echo "Medians of $RUNS runs, --mb $MB. Times are wall-clock seconds; bytes = model file + data file."
if [[ ${#misses[@]} -gt 0 ]]; then
  echo "Targets missed: $(IFS=';'; echo "${misses[*]}" | sed 's/;/; /g')."
else
  echo "All targets met."
fi
