#!/usr/bin/env bash
# Runs every test of moat and ends with one line "N passed, N failed".
#
#   scripts/test.sh [STAGE...]      STAGE: unit integration fuzz sanitizers (default: all)
#
# 1. installs what is missing (scripts/install-deps.sh --test --fuzz)
# 2. builds (meson setup build if needed; ninja -C build), also in a fresh clone
# 3. makes dev certificates if absent (scripts/gen-dev-certs.sh)
# 4. unit:        C unit tests and the C formatting check (scripts/format.sh --check),
#                 meson test -C build --print-errorlogs
# 5. integration: /usr/bin/python3 -m pytest tests/integration scripts/grader
# 6. fuzz:        every libFuzzer target (tests/fuzz/meson.build) for FUZZ_SECONDS (15)
#                 under ASan+UBSan, from the committed corpus tests/fuzz/corpus/<target>
#                 (scripts/fuzz.sh on a scratch copy, build dir build-fuzz, clang);
#                 each target is one test
# 7. sanitizers:  a second build, build-asan (-Db_sanitize=address,undefined
#                 -Dbuildtype=debug), runs the C unit tests and the integration
#                 subset default_sanitizer_tests below with MOAT_BIN=build-asan/moat
#                 MOAT_SANITIZED=1; reports go to files (ASAN_OPTIONS/UBSAN_OPTIONS
#                 log_path), a report fails the test it appeared in
#                 (scripts/pytest_sanitizer.py) and the stage
# A failing step does not stop the later ones; the counts of all test runs are
# added up (a failed build or setup step counts as one failure). Exit status is
# non-zero if anything failed.
#
# Cost on this project's 2-core machine, measured 2026-12-03 (0ddd21c, in a fresh-machine
# root while another full run shared the two cores; alone it is a few minutes less):
#   dependencies + build   ~1 min (the first run also builds build-fuzz and build-asan,
#                          about 2 minutes each)
#   unit                   ~15 s
#   integration            ~18-20 min (1054 tests; 1050-1220 s)
#   fuzz                   ~3 min (9 targets x 15 s, plus startup; 172 s)
#   sanitizers             ~6-7 min (unit, then the integration subset: 461 tests in 438 s;
#                          test_auth_redis.py left out since)
#   about 28-31 minutes in all: the 30 we allow ourselves is reached; new suites must
#   make room (the sanitizer subset, then the slowest integration files).
#
# Environment: PYTEST_ARGS (extra pytest arguments for stage 5, e.g. "-k smuggling -x"),
# MOAT_TEST_UPLOAD_MIB (size of the big-upload test, default 64), FUZZ_SECONDS
# (per fuzz target, default 15), SANITIZER_TESTS (replaces the sanitizer subset).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

logs="$(mktemp -d "${TMPDIR:-/tmp}/moat-test.XXXXXX")"
trap 'rm -rf "$logs"' EXIT
passed=0
failed=0
problems=()

timings=()
stages="${*:-unit integration fuzz sanitizers}"
for st in $stages; do
    case "$st" in
        unit|integration|fuzz|sanitizers) ;;
        *) echo "test.sh: unknown stage $st (want unit integration fuzz sanitizers)" >&2; exit 2 ;;
    esac
done
want() { [[ " $stages " == *" $1 "* ]]; }

step() { echo; echo "==> $*"; }
problem() { failed=$((failed + 1)); problems+=("$1"); echo "!!! $1"; }
timed() { timings+=("$(printf '%-13s %4ds' "$1" "$2")"); }

# Counts of a meson test log: sets $2_ok and $2_fail.
meson_counts() {
    local log="$1" rc="$3" ok fail
    count() { awk -v k="$1" 'index($0, k) == 1 { n = $NF } END { print n + 0 }' "$log"; }
    ok=$(count "Ok:")
    fail=$(( $(count "Fail:") + $(count "Timeout:") + $(count "Unexpected Pass:") ))
    if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
        fail=1
        problems+=("meson test ($2) exited $rc")
    fi
    printf -v "$2_ok" '%s' "$ok"
    printf -v "$2_fail" '%s' "$fail"
}

# Counts of a pytest junit XML: sets $2_pass, $2_fail, $2_skip.
junit_counts() {
    local xml="$1" rc="$3" p f sk
    read -r p f sk < <("$py" - "$xml" <<'PY'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print("-1 -1 -1")
    sys.exit()
p = f = s = 0
for case in root.iter("testcase"):
    kids = {c.tag for c in case}
    if kids & {"failure", "error"}:
        f += 1
    elif "skipped" in kids:
        s += 1
    else:
        p += 1
print(p, f, s)
PY
)
    # no number at all: the interpreter itself could not run
    [[ "$p" =~ ^-?[0-9]+$ ]] || p=-1
    if [ "$p" -lt 0 ]; then
        p=0 f=0 sk=0
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
            f=1
            problems+=("pytest ($2) exited $rc without a report")
        fi
    elif [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ "$f" -eq 0 ]; then
        f=1  # interrupted or internal error with no failing test recorded
        problems+=("pytest ($2) exited $rc")
    fi
    printf -v "$2_pass" '%s' "$p"
    printf -v "$2_fail" '%s' "$f"
    printf -v "$2_skip" '%s' "$sk"
}

t0=$SECONDS
step "dependencies"
scripts/install-deps.sh --test --fuzz || problem "scripts/install-deps.sh --test --fuzz failed"
# Debian's python3 (with python3-pytest), known only once the packages are in:
# on a fresh machine it does not exist before this step.
py=/usr/bin/python3
[ -x "$py" ] || py="$(command -v python3 || echo python3)"

step "build"
built=1
if [ ! -f build/build.ninja ]; then
    rm -rf build
    meson setup build || built=0
fi
if [ "$built" -eq 1 ]; then
    ninja -C build || built=0
fi
[ "$built" -eq 1 ] || problem "build failed (meson setup build && ninja -C build)"

step "dev certificates"
scripts/gen-dev-certs.sh || problem "scripts/gen-dev-certs.sh failed"

timed "setup+build" $((SECONDS - t0))

unit_ok=0 unit_fail=0
if want unit; then
    t0=$SECONDS
    step "unit tests (meson test)"
    if [ "$built" -eq 1 ]; then
        meson test -C build --print-errorlogs 2>&1 | tee "$logs/meson.txt"
        meson_counts "$logs/meson.txt" unit "${PIPESTATUS[0]}"
    else
        echo "skipped: nothing built"
    fi
    passed=$((passed + unit_ok))
    failed=$((failed + unit_fail))
    timed unit $((SECONDS - t0))
fi

it_pass=0 it_fail=0 it_skip=0
if want integration; then
    t0=$SECONDS
    step "integration tests (pytest)"
    # SIGINT on overrun lets pytest run its fixtures' teardown (they stop moat, upstreams).
    # shellcheck disable=SC2086
    timeout -s INT -k 60 3600 "$py" -m pytest tests/integration scripts/grader --junitxml="$logs/junit.xml" \
        ${PYTEST_ARGS:-}
    junit_counts "$logs/junit.xml" it $?
    passed=$((passed + it_pass))
    failed=$((failed + it_fail))
    timed integration $((SECONDS - t0))
fi

fz_pass=0 fz_fail=0
if want fuzz; then
    t0=$SECONDS
    fz_secs="${FUZZ_SECONDS:-15}"
    step "fuzz: each target ${fz_secs}s under ASan+UBSan from tests/fuzz/corpus (scripts/fuzz.sh)"
    # A fresh work dir: every run starts from the committed corpus (crash
    # reproducers included) and leaves it untouched; artifacts stay there.
    rm -rf build-fuzz/test-run
    FUZZ_WORK=build-fuzz/test-run scripts/fuzz.sh "$fz_secs" 2>&1 | tee "$logs/fuzz.txt"
    rc=${PIPESTATUS[0]}
    fz_pass=$(grep -cE '^  fuzz_[a-z0-9_]+: ok;' "$logs/fuzz.txt")
    fz_fail=$(grep -cE '^  fuzz_[a-z0-9_]+: FAILED' "$logs/fuzz.txt")
    while read -r l; do
        problems+=("$l (scripts/fuzz.sh output above; artifacts in build-fuzz/test-run)")
    done < <(grep -E '^  fuzz_[a-z0-9_]+: FAILED' "$logs/fuzz.txt" | sed 's/;.*//; s/^ *//')
    if [ "$rc" -ne 0 ] && [ "$fz_fail" -eq 0 ]; then
        fz_fail=1
        problems+=("scripts/fuzz.sh exited $rc (build of build-fuzz failed?)")
    fi
    passed=$((passed + fz_pass))
    failed=$((failed + fz_fail))
    timed fuzz $((SECONDS - t0))
fi

# The integration subset run against the sanitized moat covers every module:
# proxying (bodies, keep-alive, pipelining, limits and timeouts, WebSocket,
# upstream errors), reload and binary upgrade (listener tables, fd hand-over),
# upstream TLS and resilience (ejection, retries, slow start), auth (sessions and
# push revocation through the Redis client), forwarded identity, global
# rate limits and bad Redis replies, the syslog sender (queue, spool, TLS), HTTP/2
# and the whole hostile-client suite. Left out, to keep the whole suite within 30
# minutes (this stage near 8): the TLS scanners and grader (no new moat code);
# files whose code paths the kept ones or the fuzzers already run (smuggling: the
# parser is fuzzed; header stripping and signing run on every request; server TLS
# and mTLS run in every connection; the admission queue, health checks and admin
# API were sanitized while they were built and run in resilience; signals in
# reload/upgrade); CLI, redirect, resumption, TLS reload, key tables, outage,
# tenants, metrics, ops (systemd, container, preflight), the Redis client's failure
# modes (test_auth_redis: its parser is fuzzed, fuzz_resp).
# SANITIZER_TESTS="test_a.py test_b.py" in the environment replaces the list.
default_sanitizer_tests=(
    test_core_proxy.py test_core_limits.py test_core_websocket.py
    test_core_upstream_errors.py test_ops_reload.py test_ops_upgrade.py
    test_upstream_tls.py test_upstream_resilience.py
    test_auth_sessions.py test_identity_forwarded.py
    test_ratelimit_global.py test_ratelimit_bad_replies.py test_syslog.py
    'test_hostile_*.py' test_http2.py test_http2_hostile.py
)
read -r -a sanitizer_tests <<<"${SANITIZER_TESTS:-${default_sanitizer_tests[*]}}"
san_unit_ok=0 san_unit_fail=0 san_it_pass=0 san_it_fail=0 san_it_skip=0
if want sanitizers; then
    t0=$SECONDS
    step "sanitizers: build-asan (-Db_sanitize=address,undefined)"
    san_built=1
    if [ ! -f build-asan/build.ninja ]; then
        rm -rf build-asan
        meson setup build-asan -Db_sanitize=address,undefined -Dbuildtype=debug || san_built=0
    fi
    if [ "$san_built" -eq 1 ]; then
        ninja -C build-asan || san_built=0
    fi
    [ "$san_built" -eq 1 ] || problem "sanitizer build failed (meson setup build-asan -Db_sanitize=address,undefined)"
    # Reports go to files: the tests capture moat's stderr. halt/abort: the first
    # report ends the process; leaks are reported at exit (moat frees all on SIGTERM).
    san_unit_dir="$PWD/build-asan/sanitizer-logs/unit"
    san_it_dir="$PWD/build-asan/sanitizer-logs/integration"
    rm -rf build-asan/sanitizer-logs
    mkdir -p "$san_unit_dir" "$san_it_dir"
    san_env() {
        local dir="$1"
        export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:log_path=$dir/asan"
        # GCC's libubsan ignores log_path: its reports reach stderr, where the
        # plugin looks too (moat.stderr of each test), and halt_on_error aborts.
        export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$dir/ubsan"
    }
    if [ "$san_built" -eq 1 ]; then
        step "sanitizers: C unit tests (meson test -C build-asan)"
        ( san_env "$san_unit_dir"
          meson test -C build-asan --print-errorlogs --timeout-multiplier 10 ) 2>&1 | tee "$logs/meson-asan.txt"
        meson_counts "$logs/meson-asan.txt" san_unit "${PIPESTATUS[0]}"

        step "sanitizers: integration subset against build-asan/moat"
        it_files=()
        for f in "${sanitizer_tests[@]}"; do
            # shellcheck disable=SC2206
            matches=(tests/integration/$f)
            [ -e "${matches[0]}" ] && it_files+=("${matches[@]}")
        done
        ( san_env "$san_it_dir"
          export MOAT_BIN="$PWD/build-asan/moat" MOAT_SANITIZED=1 MOAT_SANITIZER_LOG_DIR="$san_it_dir"
          export PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}"
          timeout -s INT -k 60 3600 "$py" -m pytest -p pytest_sanitizer "${it_files[@]}" \
              --junitxml="build-asan/sanitizer-logs/junit.xml" )
        junit_counts build-asan/sanitizer-logs/junit.xml san_it $?
    fi
    # Any report file fails the stage, wherever it came from; name the test.
    for f in "$san_unit_dir"/* "$san_it_dir"/*; do
        [ -f "$f" ] || continue
        case "$(basename "$f")" in attribution.txt) continue ;; esac
        who=$(awk -F'\t' -v n="$(basename "$f")" '$1 == n {print $2}' "$san_it_dir/attribution.txt" 2>/dev/null)
        case "$f" in "$san_unit_dir"/*) who="C unit tests (see the failing test in the meson log above)" ;; esac
        echo "!!! sanitizer report $f (${who:-not attributed to a test}):"
        sed -n '1,40p' "$f"
        if [ -z "$who" ]; then
            problem "sanitizer report $(basename "$f") not attributed to a test (moat stopped after the tests?)"
        else
            problems+=("sanitizer report in $who")
        fi
    done
    passed=$((passed + san_unit_ok + san_it_pass))
    failed=$((failed + san_unit_fail + san_it_fail))
    timed sanitizers $((SECONDS - t0))
fi

echo
want unit && echo "unit tests (meson):          ok=$unit_ok fail=$unit_fail"
want integration && echo "integration tests (pytest): passed=$it_pass failed=$it_fail skipped=$it_skip"
want fuzz && echo "fuzz targets:                passed=$fz_pass failed=$fz_fail"
want sanitizers && echo "sanitizers: unit            ok=$san_unit_ok fail=$san_unit_fail; integration passed=$san_it_pass failed=$san_it_fail skipped=$san_it_skip"
echo "stage times:"
for t in "${timings[@]}"; do echo "  $t"; done
for p in "${problems[@]}"; do echo "problem: $p"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
