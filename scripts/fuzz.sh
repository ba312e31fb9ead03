#!/usr/bin/env bash
# Builds moat's libFuzzer targets (clang, ASan+UBSan) and runs each for a while.
#
#   scripts/fuzz.sh [--merge] [SECONDS_PER_TARGET] [TARGET...]
#
#   SECONDS_PER_TARGET  default 3600 (one hour each; the test command uses ~15 s)
#   TARGET              names from tests/fuzz/meson.build without "fuzz_"
#                       (http1_request, chunked...); default: all of them
#   --merge             afterwards, merge what was found into the committed corpus
#                       tests/fuzz/corpus/<target>/ (only inputs adding coverage);
#                       without it the committed corpus is never written to
#
# Build dir: build-fuzz (CC=clang meson setup build-fuzz -Dfuzz=true
# -Db_sanitize=address,undefined -Db_lundef=false), created when missing.
# Each target runs on a scratch corpus (the committed seeds plus what earlier
# runs kept in $FUZZ_WORK, default build-fuzz/fuzz-work/<target>), with a
# per-target -max_len and dictionary (tests/fuzz/*.dict). Reports per target:
# executions, coverage (cov, ft) at start and end, new corpus entries, crash
# artifacts.
# Exit status: 0 clean, 1 any crash / sanitizer report / timeout, 2 usage or build.
#
# Reproduce a crash: build-fuzz/tests/fuzz/fuzz_<target> <artifact>
# Then make it a regression: copy the artifact into tests/fuzz/corpus/<target>/
# as crash-<what> (the test command replays the whole corpus every run).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

merge=0
secs=""
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --merge) merge=1 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        [0-9]*) secs="$1" ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1") ;;
    esac
    shift
done
secs="${secs:-3600}"
bdir="${FUZZ_BUILD:-build-fuzz}"

# -max_len per target: a whole head at the largest allowed limits would be 1 MiB,
# but coverage comes from structure, and short inputs run hundreds of times faster.
max_len() {
    case "$1" in
        http1_request|http1_response) echo 16384 ;;
        chunked) echo 8192 ;;
        config) echo 16384 ;;
        resp) echo 8192 ;;
        session) echo 4096 ;;
        request_head) echo 16384 ;;
        h2_head) echo 8192 ;;
        *) echo 8192 ;;
    esac
}

# libFuzzer dictionary per target (tokens the mutator would take long to guess).
dict_of() {
    case "$1" in
        http1_request|http1_response|chunked|request_head) echo tests/fuzz/http1.dict ;;
        config) echo tests/fuzz/config.dict ;;
        resp|session) echo tests/fuzz/resp.dict ;;
        h2_head) echo tests/fuzz/h2.dict ;;
    esac
}

if [ ! -f "$bdir/build.ninja" ]; then
    rm -rf "$bdir"
    CC=clang meson setup "$bdir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debugoptimized >/dev/null || { echo "fuzz.sh: meson setup failed" >&2; exit 2; }
fi
ninja -C "$bdir" >/dev/null || { ninja -C "$bdir"; echo "fuzz.sh: build failed" >&2; exit 2; }

# The target list is the one in tests/fuzz/meson.build.
mapfile -t all < <(meson introspect --targets "$bdir" | /usr/bin/python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["name"].startswith("fuzz_") and t["type"] == "executable":
        print(t["name"][5:])' | sort)
[ "${#all[@]}" -gt 0 ] || { echo "fuzz.sh: no fuzz targets in $bdir" >&2; exit 2; }
if [ "${#targets[@]}" -eq 0 ]; then
    targets=("${all[@]}")
fi
for t in "${targets[@]}"; do
    [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target $t (have: ${all[*]})" >&2; exit 2; }
done

work="$(realpath -m "${FUZZ_WORK:-$bdir/fuzz-work}")"
root="$PWD"
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
bad=0
summary=()
for t in "${targets[@]}"; do
    bin="$(realpath "$bdir")/tests/fuzz/fuzz_$t"
    seeds="$root/tests/fuzz/corpus/$t"
    corpus="$work/$t/corpus"
    arts="$work/$t/artifacts"
    log="$work/$t/fuzz.log"
    mkdir -p "$corpus" "$arts" "$seeds"
    touch "$work/$t/.start"
    before=$(find "$corpus" -type f | wc -l)
    echo "==> fuzz_$t: ${secs}s, -max_len=$(max_len "$t") (log $log)"
    # The committed seeds are read (second corpus dir), new inputs go to the scratch one.
    # -timeout: one input taking this long is a finding (a hang), not a slow machine.
    dict=()
    [ -n "$(dict_of "$t")" ] && dict=(-dict="$root/$(dict_of "$t")")
    ( cd "$work/$t" && exec "$bin" -max_total_time="$secs" -max_len="$(max_len "$t")" "${dict[@]}" \
        -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$arts/" \
        "$corpus" "$seeds" ) >"$log" 2>&1
    rc=$?
    after=$(find "$corpus" -type f | wc -l)
    execs=$(awk '/stat::number_of_executed_units:/ {n = $2} END {print n + 0}' "$log")
    [ "$execs" -gt 0 ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    first=$(grep -m1 -E 'INITED' "$log" | grep -oE 'cov: [0-9]+ ft: [0-9]+')
    last=$(grep -E '^#[0-9]+.*cov:' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')
    status=ok
    if [ "$rc" -ne 0 ] || grep -qE '^==[0-9]+==ERROR|runtime error:|deadly signal|ERROR: libFuzzer' "$log"; then
        status="FAILED (exit $rc)"
        bad=1
        grep -m3 -E 'ERROR|runtime error|SUMMARY' "$log" | sed 's/^/    /'
    fi
    line="fuzz_$t: $status; executions ${execs:-0}; coverage ${first:-?} -> ${last:-?}; new corpus entries $((after - before))"
    arts_now=$(find "$arts" -type f -newer "$work/$t/.start" 2>/dev/null)
    if [ -n "$arts_now" ]; then
        line+="; artifacts: $(echo "$arts_now" | tr '\n' ' ')"
        [ "$status" = ok ] && { status=FAILED; bad=1; line="${line/: ok;/: FAILED;}"; }
    fi
    summary+=("$line")
    echo "    $line"
    if [ "$merge" -eq 1 ] && [ "$status" = ok ]; then
        "$bin" -merge=1 -max_len="$(max_len "$t")" "$seeds" "$corpus" >"$work/$t/merge.log" 2>&1 \
            && echo "    merged into $seeds: $(find "$seeds" -type f | wc -l) files"
    fi
done
echo
echo "fuzz summary (${secs}s per target):"
for l in "${summary[@]}"; do echo "  $l"; done
exit "$bad"
