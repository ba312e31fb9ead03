#!/usr/bin/env bash
# Scans a running moat with testssl.sh and grades the result the SSL Labs way.
#
#   scripts/scan.sh [--target HOST:PORT] [--json-out FILE] [--start] [--config FILE]
#                   [--ca FILE] [--grade-only FILE]
#
#   --target HOST:PORT  what to scan (default localhost:8443, conf/moat.yaml's listener).
#                       The host is also the SNI name; use a name the certificate holds.
#   --start             start a moat first: conf/moat.yaml (or --config) with its listeners
#                       moved to free 127.0.0.1 ports, the dev certificates
#                       (scripts/gen-dev-certs.sh) and the demo application as upstream;
#                       both are stopped (by PID) when the scan ends, also on failure.
#   --json-out FILE     keep testssl.sh's flat JSON there (default: a temp file, removed)
#   --config FILE       base config for --start (default conf/moat.yaml)
#   --ca FILE           extra CA for the chain of trust (default certs/dev/ca.crt when it
#                       exists: the dev CA counts as trusted); "none" to pass no CA
#   --grade-only FILE   skip the scan, grade an existing testssl.sh JSON file
#
# testssl.sh runs offline-safe: --nodns none for localhost/IP targets (min otherwise), no
# --phone-out (no CRL/OCSP fetches), --openssl /usr/bin/openssl, --warnings batch, no
# colours. Then the grader (python3 scripts/grader FILE) prints the score table and every
# cap.
#
# Environment: MOAT_BIN (moat binary for --start, default build/moat), TESTSSL (the
# testssl.sh command), SCAN_TIMEOUT (seconds for testssl.sh, default 900).
# Exit status: 0 grade A or A+; 1 below A; 2 the scan or the grading failed; 64 usage.
# testssl.sh's remarks about its own environment are not findings against the server:
# engine_problem (the local openssl has no GOST engine) is listed as "not tested" and
# graded around; a stopped scan (FATAL, scanProblem) or an openssl testssl.sh calls too
# old (old_fart, too_old_openssl) is exit 2 (scripts/grader/facts.py, scan_problems).
set -uo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }

target=""
json_out=""
start=0
config="conf/moat.yaml"
ca="default"
grade_only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --target) target="${2:-}"; shift 2 || { usage >&2; exit 64; } ;;
        --target=*) target="${1#*=}"; shift ;;
        --json-out) json_out="${2:-}"; shift 2 || { usage >&2; exit 64; } ;;
        --json-out=*) json_out="${1#*=}"; shift ;;
        --start) start=1; shift ;;
        --config) config="${2:-}"; shift 2 || { usage >&2; exit 64; } ;;
        --ca) ca="${2:-}"; shift 2 || { usage >&2; exit 64; } ;;
        --grade-only) grade_only="${2:-}"; shift 2 || { usage >&2; exit 64; } ;;
        -h|--help) usage; exit 0 ;;
        *) echo "scan.sh: unknown argument $1" >&2; usage >&2; exit 64 ;;
    esac
done

python3=/usr/bin/python3
[ -x "$python3" ] || python3="$(command -v python3)"
grader="$repo/scripts/grader"  # a package: python3 runs its __main__.py

if [ -n "$grade_only" ]; then
    "$python3" "$grader" "$grade_only"
    exit $?
fi

if [ "$start" -eq 1 ] && [ -n "$target" ]; then
    echo "scan.sh: --start picks its own port; do not combine it with --target" >&2
    exit 64
fi
target_re='^[A-Za-z0-9._-]+:[0-9]+$'
target6_re='^\[[0-9a-fA-F:]+\]:[0-9]+$'
if [ -n "$target" ] && ! [[ "$target" =~ $target_re || "$target" =~ $target6_re ]]; then
    echo "scan.sh: --target wants HOST:PORT, got '$target'" >&2
    exit 64
fi

testssl="${TESTSSL:-}"
if [ -z "$testssl" ]; then
    testssl="$(command -v testssl.sh || command -v testssl || true)"
fi
if [ -z "$testssl" ]; then
    echo "scan.sh: testssl.sh not found (scripts/install-deps.sh --test installs it)" >&2
    exit 2
fi
openssl_bin="$(command -v openssl || true)"
[ -x /usr/bin/openssl ] && openssl_bin=/usr/bin/openssl
if [ -z "$openssl_bin" ]; then
    echo "scan.sh: openssl not found" >&2
    exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/moat-scan.XXXXXX")"
moat_pid=""
up_pid=""
stop_pid() { # PID NAME: SIGTERM, up to 15 s, then SIGKILL
    local pid="$1" i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "scan.sh: $2 (pid $pid) ignored SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}
cleanup() {
    stop_pid "$moat_pid" moat
    moat_pid=""
    stop_pid "$up_pid" "demo upstream"
    up_pid=""
    rm -rf "$work"
    [ -z "${cfg:-}" ] || rm -f "$cfg"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$python3" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
listening() { # PORT
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

if [ "$start" -eq 1 ]; then
    moat_bin="${MOAT_BIN:-build/moat}"
    if [ ! -x "$moat_bin" ]; then
        echo "scan.sh: moat binary $moat_bin not found (build it, or set MOAT_BIN)" >&2
        exit 2
    fi
    [ -f "$config" ] || { echo "scan.sh: no config $config" >&2; exit 2; }
    scripts/gen-dev-certs.sh >/dev/null || { echo "scan.sh: gen-dev-certs failed" >&2; exit 2; }
    https="$(free_port)"; http="$(free_port)"; admin="$(free_port)"; up="$(free_port)"
    # Beside the original: relative paths in it are relative to its directory.
    cfg="$(dirname "$config")/.scan-$$.yaml"
    # The shipped config, with its listeners and upstream moved to free local ports and
    # the access log to a file. Everything TLS (certificates, policy, HSTS) stays as is.
    sed -E \
        -e "s|^([[:space:]]*https:[[:space:]]*)\[.*\]|\1[\"127.0.0.1:$https\"]|" \
        -e "s|^([[:space:]]*http:[[:space:]]*)\[.*\]|\1[\"127.0.0.1:$http\"]|" \
        -e "s|^([[:space:]]*admin:[[:space:]]*)\"[^\"]*\"|\1\"127.0.0.1:$admin\"|" \
        -e "s|^([[:space:]]*redirect_https_port:[[:space:]]*)[0-9]+|\1$https|" \
        -e "s|^([[:space:]]*servers:[[:space:]]*)\[\"127\.0\.0\.1:9000\"\]|\1[\"127.0.0.1:$up\"]|" \
        -e "s|^([[:space:]]*access:[[:space:]]*)stdout|\1\"$work/access.log\"|" \
        "$config" > "$cfg"
    for want in "127.0.0.1:$https" "127.0.0.1:$up"; do
        if ! grep -q "$want" "$cfg"; then
            echo "scan.sh: could not move $config to free ports (no listen.https / upstream" \
                 "line in the expected shape); scan a running moat with --target instead" >&2
            exit 2
        fi
    done
    if ! "$moat_bin" -t -c "$cfg" > "$work/check.txt" 2>&1; then
        echo "scan.sh: the derived config is invalid:" >&2
        cat "$work/check.txt" >&2
        exit 2
    fi
    "$python3" scripts/demo-upstream.py --port "$up" --host 127.0.0.1 \
        > "$work/upstream.log" 2>&1 < /dev/null &
    up_pid=$!
    "$moat_bin" -c "$cfg" > "$work/moat.stdout" 2> "$work/moat.stderr" < /dev/null &
    moat_pid=$!
    for _ in $(seq 100); do
        listening "$https" && listening "$up" && break
        kill -0 "$moat_pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! kill -0 "$moat_pid" 2>/dev/null || ! listening "$https"; then
        echo "scan.sh: moat did not start:" >&2
        cat "$work/moat.stderr" >&2
        exit 2
    fi
    echo "scan.sh: started moat (pid $moat_pid) from $config on 127.0.0.1:$https," \
         "demo upstream (pid $up_pid) on 127.0.0.1:$up"
    target="localhost:$https"
fi
[ -n "$target" ] || target="localhost:8443"

if [ "$ca" = "default" ]; then
    ca=""
    [ -f certs/dev/ca.crt ] && ca="certs/dev/ca.crt"
elif [ "$ca" = "none" ]; then
    ca=""
fi
host="${target%:*}"
nodns=min
if [ "$host" = "localhost" ] || [[ "$host" =~ ^[0-9.]+$ ]] || [[ "$host" =~ ^\[ ]]; then
    nodns=none
fi

json="${json_out:-$work/testssl.json}"
rm -f "$json"   # testssl.sh refuses to overwrite a non-empty file
args=(--quiet --color 0 --warnings batch --openssl "$openssl_bin" --nodns "$nodns"
      --connect-timeout 10 --openssl-timeout 10 --jsonfile "$json")
[ -n "$ca" ] && args+=(--add-ca "$ca")
echo "scan.sh: $testssl ${args[*]} $target"
t0=$(date +%s)
timeout -k 10 "${SCAN_TIMEOUT:-900}" "$testssl" "${args[@]}" "$target" < /dev/null
rc=$?
echo "scan.sh: testssl.sh exited $rc after $(( $(date +%s) - t0 )) s"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] || [ "$rc" -ge 240 ]; then
    echo "scan.sh: testssl.sh failed (exit $rc)" >&2
    exit 2
fi
if [ ! -s "$json" ]; then
    echo "scan.sh: testssl.sh wrote no JSON ($json)" >&2
    exit 2
fi
if [ -n "$moat_pid" ] && ! kill -0 "$moat_pid" 2>/dev/null; then
    echo "scan.sh: moat died during the scan:" >&2
    cat "$work/moat.stderr" >&2
    moat_pid=""
    exit 2
fi
echo
"$python3" "$grader" "$json"
grc=$?
[ -n "$json_out" ] && echo "scan.sh: testssl.sh JSON kept in $json_out"
exit "$grc"
