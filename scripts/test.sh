#!/usr/bin/env bash
# Runs every test of moat and ends with one line "N passed, N failed".
#
#   scripts/test.sh
#
# 1. installs what is missing (scripts/install-deps.sh --test)
# 2. builds (meson setup build if needed; ninja -C build), also in a fresh clone
# 3. makes dev certificates if absent (scripts/gen-dev-certs.sh)
# 4. C unit tests:        meson test -C build --print-errorlogs
# 5. integration tests:   /usr/bin/python3 -m pytest tests/integration
# A failing step does not stop the later ones; the counts of both test runs are
# added up (a failed build or setup step counts as one failure). Exit status is
# non-zero if anything failed.
#
# Environment: PYTEST_ARGS (extra pytest arguments, e.g. "-k smuggling -x"),
# MOAT_TEST_UPLOAD_MIB (size of the big-upload test, default 64).
set -uo pipefail
cd "$(dirname "$0")/.."

logs="$(mktemp -d "${TMPDIR:-/tmp}/moat-test.XXXXXX")"
trap 'rm -rf "$logs"' EXIT
passed=0
failed=0
problems=()

step() { echo; echo "==> $*"; }
problem() { failed=$((failed + 1)); problems+=("$1"); echo "!!! $1"; }

step "dependencies"
scripts/install-deps.sh --test || problem "scripts/install-deps.sh --test failed"

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

step "unit tests (meson test)"
unit_ok=0
unit_fail=0
if [ "$built" -eq 1 ]; then
    meson test -C build --print-errorlogs 2>&1 | tee "$logs/meson.txt"
    rc=${PIPESTATUS[0]}
    count() { awk -v k="$1" 'index($0, k) == 1 { n = $NF } END { print n + 0 }' "$logs/meson.txt"; }
    unit_ok=$(count "Ok:")
    unit_fail=$(( $(count "Fail:") + $(count "Timeout:") + $(count "Unexpected Pass:") ))
    if [ "$rc" -ne 0 ] && [ "$unit_fail" -eq 0 ]; then
        unit_fail=1
        problems+=("meson test exited $rc")
    fi
else
    echo "skipped: nothing built"
fi
passed=$((passed + unit_ok))
failed=$((failed + unit_fail))

step "integration tests (pytest)"
py=/usr/bin/python3
[ -x "$py" ] || py="$(command -v python3)"
# SIGINT on overrun lets pytest run its fixtures' teardown (they stop moat, upstreams).
# shellcheck disable=SC2086
timeout -s INT -k 60 3600 "$py" -m pytest tests/integration --junitxml="$logs/junit.xml" \
    ${PYTEST_ARGS:-}
rc=$?
read -r it_pass it_fail it_skip < <("$py" - "$logs/junit.xml" <<'PY'
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
if [ "$it_pass" -lt 0 ]; then
    it_pass=0 it_fail=0 it_skip=0
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
        it_fail=1
        problems+=("pytest exited $rc without a report")
    fi
elif [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ "$it_fail" -eq 0 ]; then
    it_fail=1  # interrupted or internal error with no failing test recorded
    problems+=("pytest exited $rc")
fi
passed=$((passed + it_pass))
failed=$((failed + it_fail))

echo
echo "unit tests (meson):        ok=$unit_ok fail=$unit_fail"
echo "integration tests (pytest): passed=$it_pass failed=$it_fail skipped=$it_skip"
for p in "${problems[@]}"; do echo "problem: $p"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
