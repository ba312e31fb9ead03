#!/usr/bin/env bash
# The demo: from a fresh Debian 12 machine, installs what is missing, builds moat,
# makes development certificates, starts a demo application on 127.0.0.1:9000 and
# runs moat in the foreground with conf/moat.yaml (HTTPS on :8443, redirects on :8080).
#
#   scripts/run.sh                 Ctrl-C (or SIGTERM) drains moat and stops the demo app
#
# Environment: MOAT_CONF (default conf/moat.yaml), DEMO_PORT (default 9000).
set -euo pipefail
cd "$(dirname "$0")/.."

conf="${MOAT_CONF:-conf/moat.yaml}"
demo_port="${DEMO_PORT:-9000}"

scripts/install-deps.sh
if [ ! -f build/build.ninja ]; then
    rm -rf build
    meson setup build
fi
ninja -C build
[ -f certs/dev/server.crt ] || scripts/gen-dev-certs.sh

python3=/usr/bin/python3
[ -x "$python3" ] || python3="$(command -v python3)"
"$python3" scripts/demo-upstream.py --port "$demo_port" &
demo_pid=$!
moat_pid=""
cleanup() {
    if [ -n "$moat_pid" ] && kill -0 "$moat_pid" 2>/dev/null; then
        kill -TERM "$moat_pid" 2>/dev/null || true
        wait "$moat_pid" 2>/dev/null || true
    fi
    kill -TERM "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
}
trap cleanup EXIT

cat <<MSG

moat is starting with $conf (demo application on 127.0.0.1:$demo_port).
Try it from another terminal:

    curl --cacert certs/dev/ca.crt https://localhost:8443/
    curl -i http://localhost:8080/some/path          # 308 to https://
    curl --cacert certs/dev/ca.crt -d 'hello' https://localhost:8443/echo

Ctrl-C (or SIGTERM) drains in-flight requests and stops moat and the demo app.

MSG

build/moat -c "$conf" &
moat_pid=$!
# Ctrl-C and SIGTERM go to moat, which drains and exits; we then clean up.
trap 'kill -TERM "$moat_pid" 2>/dev/null || true' INT TERM
set +e
while :; do
    wait "$moat_pid"   # returns early (>128) when a trapped signal arrives
    kill -0 "$moat_pid" 2>/dev/null || break
done
wait "$moat_pid" 2>/dev/null
rc=$?
set -e
moat_pid=""
exit "$rc"
