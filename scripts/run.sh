#!/usr/bin/env bash
# The demo: from a fresh Debian 12 machine, installs what is missing, builds moat,
# makes development certificates, starts a throw-away redis-server and the demo
# application, and runs moat in the foreground with conf/demo.yaml: sessions from
# Redis written by a login page, a tenant (acme) with its own application server, an
# MFA-only area, a rate limit and signed identity headers (README, "Try it").
#
#   scripts/run.sh [--no-build]    Ctrl-C (or SIGTERM) drains moat, then stops the
#                                  demo apps and redis-server (by PID)
#
#   --no-build        do not run meson/ninja: build/moat must exist (or MOAT_BIN)
#
# What runs, all on 127.0.0.1 (environment variables change the ports):
#   moat           https :8443 (DEMO_HTTPS_PORT), http :8080 redirects (DEMO_HTTP_PORT),
#                  admin :9901 (DEMO_ADMIN_PORT)
#   redis-server   :6390 (DEMO_REDIS_PORT), no persistence (--save '' --appendonly no),
#                  its files in a temporary directory removed on exit
#   demo app       :9000 "shared" (DEMO_APP_PORT) and :9100 "acme-dedicated"
#                  (DEMO_ACME_PORT): scripts/demo-app.py
# Other environment: MOAT_BIN (a moat binary to run: no build), MOAT_CONF (default
# conf/demo.yaml; when a port is changed, moat runs a copy with the ports replaced).
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done

conf="${MOAT_CONF:-conf/demo.yaml}"
https_port="${DEMO_HTTPS_PORT:-8443}"
http_port="${DEMO_HTTP_PORT:-8080}"
admin_port="${DEMO_ADMIN_PORT:-9901}"
redis_port="${DEMO_REDIS_PORT:-6390}"
app_port="${DEMO_APP_PORT:-9000}"
acme_port="${DEMO_ACME_PORT:-9100}"
moat="${MOAT_BIN:-build/moat}"
[ -n "${MOAT_BIN:-}" ] && build=0

scripts/install-deps.sh
if [ "$build" -eq 1 ]; then
    if [ ! -f build/build.ninja ]; then
        rm -rf build
        meson setup build
    fi
    ninja -C build
fi
[ -x "$moat" ] || { echo "run.sh: $moat not found (run without --no-build)" >&2; exit 1; }
[ -f certs/dev/server.crt ] || scripts/gen-dev-certs.sh
if [ ! -s certs/dev/signing.key ]; then  # certificates from before signing existed
    (umask 077 && printf '%s' "$(openssl rand -hex 32)" > certs/dev/signing.key)
fi

python3=/usr/bin/python3
[ -x "$python3" ] || python3="$(command -v python3)"

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/moat-demo.XXXXXX")"
redis_pid="" app_pid="" acme_pid="" moat_pid=""
stop_pid() {  # PID: SIGTERM, then wait for it (it is our child)
    if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
        kill -TERM "$1" 2>/dev/null || true
    fi
    [ -z "$1" ] || wait "$1" 2>/dev/null || true
}
cleanup() {
    trap - INT TERM
    stop_pid "$moat_pid"
    stop_pid "$app_pid"
    stop_pid "$acme_pid"
    stop_pid "$redis_pid"
    rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ports other than the defaults: run a copy of the config with them.
if [ "$https_port$http_port$admin_port$redis_port$app_port$acme_port" != \
     "844380809901639090009100" ]; then
    sed -e "s/127\.0\.0\.1:8443\b/127.0.0.1:$https_port/g" \
        -e "s/redirect_https_port: 8443\b/redirect_https_port: $https_port/" \
        -e "s/127\.0\.0\.1:8080\b/127.0.0.1:$http_port/g" \
        -e "s/127\.0\.0\.1:9901\b/127.0.0.1:$admin_port/g" \
        -e "s/127\.0\.0\.1:6390\b/127.0.0.1:$redis_port/g" \
        -e "s/127\.0\.0\.1:9000\b/127.0.0.1:$app_port/g" \
        -e "s/127\.0\.0\.1:9100\b/127.0.0.1:$acme_port/g" \
        -e "s|\.\./certs/|$PWD/certs/|g" "$conf" > "$run_dir/moat.yaml"  # paths: from conf/
    conf="$run_dir/moat.yaml"
fi

# The session store: nothing written to disk, gone when the demo stops.
mkdir "$run_dir/redis"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --dir "$run_dir/redis" > "$run_dir/redis/redis.log" 2>&1 < /dev/null &
redis_pid=$!
for _ in $(seq 100); do
    # ours answering, not another Redis already on that port
    redis-cli -p "$redis_port" info server 2>/dev/null | tr -d '\r' |
        grep -x "process_id:$redis_pid" >/dev/null && break
    if ! kill -0 "$redis_pid" 2>/dev/null; then
        echo "run.sh: redis-server did not start on 127.0.0.1:$redis_port:" >&2
        cat "$run_dir/redis/redis.log" >&2
        exit 1
    fi
    sleep 0.1
done

app=("$python3" scripts/demo-app.py --redis "127.0.0.1:$redis_port"
     --signing-key certs/dev/signing.key)
"${app[@]}" --port "$app_port" --name shared < /dev/null &
app_pid=$!
"${app[@]}" --port "$acme_port" --name acme-dedicated < /dev/null &
acme_pid=$!
for port in "$app_port" "$acme_port"; do
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        if ! kill -0 "$app_pid" 2>/dev/null || ! kill -0 "$acme_pid" 2>/dev/null; then
            echo "run.sh: the demo app did not start" >&2
            exit 1
        fi
        sleep 0.1
    done
done

u="https://localhost:$https_port"
cat <<MSG

moat is starting with $conf: redis-server on 127.0.0.1:$redis_port, demo apps on
127.0.0.1:$app_port (shared) and 127.0.0.1:$acme_port (acme-dedicated).
Try it from another terminal (README, "Try it"), or open $u/ in a browser
after trusting certs/dev/ca.crt:

    c="curl -s --cacert certs/dev/ca.crt -c jar -b jar"
    \$c -i $u/                                  # 302 to /login?return_to=/
    \$c -d user=alice -d tenant=acme $u/login   # logged in as alice (tenant acme)
    \$c $u/                                     # headers moat sent, signature: valid
    \$c -o /dev/null -w '%{http_code}\\n' $u/admin   # 403: this session has no MFA
    for i in 1 2 3 4 5 6 7; do \$c -o /dev/null -w '%{http_code} ' $u/api/whoami; done; echo
    \$c -X POST $u/logout                       # deletes the session in Redis
    \$c -i $u/api/whoami                        # 401 from now on

Ctrl-C (or SIGTERM) drains moat and stops the demo apps and redis-server.

MSG

"$moat" -c "$conf" &
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
