#!/usr/bin/env bash
# moat alone, cost of its features: scripts/bench.sh --features [options]
#
#   scripts/bench.sh --features [--rounds N] [--duration S] [--quick] [--configs "..."]
#                               [--no-build] [--out DIR]
#
#   --rounds N      rounds; every round runs every config, order rotating (default 3)
#   --duration S    seconds per measured wrk run (default 5)
#   --quick         1 round of 3 s
#   --configs LIST  subset of "base auth-cache auth-nocache auth-cluster rl-local rl-global
#                   rl-global-cluster rl-global-keys up-health up-admission"
#   --no-build      use build-bench/moat as it is (or $MOAT_BENCH_BIN: a binary to compare)
#   --out DIR       raw output directory (default bench-results/features-YYYYmmdd-HHMMSS)
#
# Configs (all moat, one worker pinned to CPU 1; wrk -t1 -c64 keep-alive, the nginx
# upstream (64-byte body) and redis-server pinned to CPU 0):
#   base          route auth: none, no rate limit (scripts/bench/moat.yaml)
#   auth-cache    redis: section, route auth: required, sessions.cache_ttl 60s; wrk sends
#                 Authorization: Bearer <token> of a session created in Redis
#   auth-nocache  the same with cache_ttl 0s, negative_cache_ttl 0s (Redis on every request)
#   auth-cluster  auth-nocache with redis.mode: cluster: three cluster nodes (no replicas,
#                 pinned to CPU 0 like the single redis, created with redis-cli --cluster
#                 create), the session written through redis-cli -c; the session key's
#                 slot lives on one of them (issue 17: cluster mode costs what single does)
#   rl-local      auth: none, rate_limit [{key: ip, rate: 100000000/s, burst: 100000000}]
#   rl-global     the same rule with scope: global (Redis), ratelimit.redis_timeout 200ms;
#                 every request must be decided by Redis (moat_ratelimit_global_decisions_total)
#                 though requests for the one key share script calls (Redis calls/req < 1)
#   rl-global-cluster  rl-global on the cluster of auth-cluster
#   rl-global-keys  the global rule keyed on header X-Client, which wrk cycles over 1000
#                 values (scripts/bench/client_keys.lua): few requests share a key, so
#                 calls are shared only across keys (the groups of one loop turn).
#                 Informative (no target): the cost of many keys.
#   up-health     auth: none, upstreams.app.health { path: /, interval: 500ms } and
#                 outlier ejection (its default): the checker runs on the main thread,
#                 requests read the shared server state
#   up-admission  up-health plus admission { max_in_flight: 10000,
#                 max_in_flight_per_tenant: 5000 }: every request takes and frees a slot
#                 (anonymous: one tenant per route)
# Per run: req/s, moat CPU us/request (/proc/PID/stat utime+stime), Redis CPU
# us/request, wrk socket errors and non-2xx (must be 0), moat 2xx/4xx/5xx counters.
# Prints medians, ratio to base and the targets auth-cache >= 0.90x base,
# rl-local >= 0.95x, rl-global >= 0.85x, moat CPU per request of up-health and
# up-admission within 1.03x base (issue 14: <= 3 %), and cluster mode within 5 % of
# single mode (issue 17): auth-cluster req/s >= 0.95x and CPU/req <= 1.05x auth-nocache,
# rl-global-cluster the same against rl-global. Redis CPU and calls of a cluster config
# are the sum over its three nodes. Exit status 0 even if a target is not met;
# 1 on any error (wrk errors, non-2xx, no moat:rl:* key in Redis after a global config,
# fewer Redis decisions than requests or any on_store_error fallback).
# Ports: 127.0.0.1:18180 (upstream), 18543 (moat), 18911 (admin), 18379 (redis),
# 18381-18383 and their cluster bus ports 28381-28383 (the cluster, only when a *-cluster
# config runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"

rounds=3
duration=5
configs="base auth-cache auth-nocache auth-cluster rl-local rl-global rl-global-cluster rl-global-keys up-health up-admission"
build=1
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift ;;
        --duration) duration="$2"; shift ;;
        --quick) rounds=1; duration=3 ;;
        --configs) configs="$2"; shift ;;
        --no-build) build=0 ;;
        --out) out="$2"; shift ;;
        -h|--help) sed -n '2,43p' "$0"; exit 0 ;;
        *) echo "bench --features: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$rounds$duration" in *[!0-9]*|"") echo "bench: --rounds, --duration take integers" >&2; exit 2 ;; esac
[ "$rounds" -ge 1 ] && [ "$duration" -ge 1 ] || { echo "bench: values must be >= 1" >&2; exit 2; }
for c in $configs; do
    case "$c" in base|auth-cache|auth-nocache|auth-cluster|rl-local|rl-global|rl-global-cluster|rl-global-keys|up-health|up-admission) ;;
        *) echo "bench: unknown config $c" >&2; exit 2 ;; esac
done

export PATH="$PATH:/usr/sbin"
for cmd in nginx wrk taskset curl redis-server redis-cli openssl; do
    command -v "$cmd" >/dev/null 2>&1 || { echo "bench: $cmd not found" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "bench: needs 2 CPUs" >&2; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"

UP_PORT=18180
MOAT_PORT=18543
ADMIN_PORT=18911
REDIS_PORT=18379
CLUSTER_PORTS=(18381 18382 18383)
cluster=0
for c in $configs; do case "$c" in *-cluster) cluster=1 ;; esac; done

RUN="${out:-bench-results/features-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$RUN/raw" "$RUN/conf" "$RUN/logs"
RUN="$(cd "$RUN" && pwd)"
RES="$RUN/results.tsv"
: >"$RES"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$RUN/bench.log" >&2; }
result() { echo -e "$1\t$2\t$3\t$4" >>"$RES"; } # round config metric value

scripts/gen-dev-certs.sh >/dev/null
CERTS="$ROOT/certs/dev"
if [ "$build" -eq 1 ]; then
    if [ ! -f build-bench/build.ninja ]; then
        meson setup build-bench --buildtype=release -Db_ndebug=true -Dwerror=false >"$RUN/build.log" 2>&1
    fi
    ninja -C build-bench moat >>"$RUN/build.log" 2>&1 || { echo "bench: build failed, see $RUN/build.log" >&2; exit 1; }
fi
MOAT="${MOAT_BENCH_BIN:-$ROOT/build-bench/moat}" # another build to compare (with --no-build)
[ -x "$MOAT" ] || { echo "bench: $MOAT missing" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PIDS=()
stop_pid() { # PID: TERM, wait up to 5 s, KILL; forget it
    local p="$1" i keep=() q
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    PIDS=("${keep[@]}")
}
cleanup() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports=("$UP_PORT" "$MOAT_PORT" "$ADMIN_PORT" "$REDIS_PORT")
if [ "$cluster" -eq 1 ]; then
    for p in "${CLUSTER_PORTS[@]}"; do ports+=("$p" $((p + 10000))); done
fi
for p in "${ports[@]}"; do
    port_free "$p" || { echo "bench: 127.0.0.1:$p is in use" >&2; exit 1; }
done

cpu_ticks() { # PID -> utime+stime in clock ticks
    local s
    s="$(cat "/proc/$1/stat")"
    s="${s##*) }"
    set -- $s
    echo $(( ${12} + ${13} ))
}
HZ="$(getconf CLK_TCK)"

{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "moat: $("$MOAT" -V 2>&1 | head -1 || true) (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(git -C "$ROOT" status --porcelain -- src 2>/dev/null | wc -l) changed files in src/)"
    echo "redis: $(redis-server --version)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "rounds=$rounds duration=${duration}s configs=$configs"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RUN/env.txt"
cat "$RUN/env.txt" >&2

# ---------------------------------------------------------------- upstream, redis
mkdir -p "$RUN/upstream-tmp"
sed -e "s|{{RUN}}|$RUN|g" -e "s|{{PORT}}|$UP_PORT|g" scripts/bench/upstream-nginx.conf >"$RUN/upstream.conf"
taskset -c 0 nginx -p "$RUN" -c "$RUN/upstream.conf" -g 'daemon off;' 2>>"$RUN/logs/upstream.stderr" &
PIDS+=($!)
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$UP_PORT/" && break; sleep 0.1; done
[ "$(curl -s "http://127.0.0.1:$UP_PORT/" | wc -c)" -eq 64 ] || { echo "bench: upstream did not start" >&2; exit 1; }

mkdir -p "$RUN/redis"
(cd "$RUN/redis" && exec taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --protected-mode yes --dir "$RUN/redis") >"$RUN/logs/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
RCLI=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")
for _ in $(seq 50); do [ "$("${RCLI[@]}" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
[ "$("${RCLI[@]}" ping 2>/dev/null)" = PONG ] || { echo "bench: redis-server did not start" >&2; cat "$RUN/logs/redis.log" >&2; exit 1; }

TOKEN="$(openssl rand -hex 24)" # 48 characters, >= token_min_len
TOKEN_SHA="$(printf '%s' "$TOKEN" | openssl dgst -sha256 -r | cut -d' ' -f1)"
"${RCLI[@]}" hset "moat:sess:$TOKEN_SHA" tenant acme user u1 mfa 1 >/dev/null
echo "session key: moat:sess:$TOKEN_SHA" >>"$RUN/env.txt"

# The cluster of the *-cluster configs: three masters, no replicas, pinned like the redis.
CLUSTER_PIDS=()
if [ "$cluster" -eq 1 ]; then
    seeds=()
    for p in "${CLUSTER_PORTS[@]}"; do
        mkdir -p "$RUN/cluster-$p"
        (cd "$RUN/cluster-$p" && exec taskset -c 0 redis-server --port "$p" --bind 127.0.0.1 --save '' \
            --appendonly no --protected-mode yes --dir "$RUN/cluster-$p" --cluster-enabled yes \
            --cluster-config-file "nodes-$p.conf" --cluster-port $((p + 10000))) \
            >"$RUN/logs/cluster-$p.log" 2>&1 &
        CLUSTER_PIDS+=($!)
        PIDS+=($!)
        seeds+=("127.0.0.1:$p")
    done
    for p in "${CLUSTER_PORTS[@]}"; do
        for _ in $(seq 50); do [ "$(redis-cli -p "$p" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
        [ "$(redis-cli -p "$p" ping 2>/dev/null)" = PONG ] ||
            { echo "bench: cluster node $p did not start" >&2; cat "$RUN/logs/cluster-$p.log" >&2; exit 1; }
    done
    redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes \
        >"$RUN/logs/cluster-create.log" 2>&1 </dev/null ||
        { echo "bench: redis-cli --cluster create failed" >&2; cat "$RUN/logs/cluster-create.log" >&2; exit 1; }
    for _ in $(seq 100); do
        ok=0
        for p in "${CLUSTER_PORTS[@]}"; do
            redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && ok=$((ok + 1))
        done
        [ "$ok" -eq "${#CLUSTER_PORTS[@]}" ] && break
        sleep 0.1
    done
    [ "$ok" -eq "${#CLUSTER_PORTS[@]}" ] || { echo "bench: cluster not ok" >&2; exit 1; }
    redis-cli -c -p "${CLUSTER_PORTS[0]}" hset "moat:sess:$TOKEN_SHA" tenant acme user u1 mfa 1 >/dev/null
    echo "cluster: ${seeds[*]}, session key in slot $(redis-cli -p "${CLUSTER_PORTS[0]}" cluster keyslot "moat:sess:$TOKEN_SHA")" >>"$RUN/env.txt"
fi
is_cluster() { [ "$1" != "${1%-cluster}" ]; }

# ---------------------------------------------------------------- moat configs
render_conf() { # CONFIG -> path of its yaml
    local c="$1" f="$RUN/conf/moat-$1.yaml" auth=none rl="" redis=0 sess="" up=""
    case "$c" in
        auth-cache) auth=required; redis=1; sess="  cache_ttl: 60s" ;;
        auth-nocache) auth=required; redis=1; sess=$'  cache_ttl: 0s\n  negative_cache_ttl: 0s' ;;
        rl-local) rl='    rate_limit: [{ key: ip, rate: "100000000/s", burst: 100000000 }]' ;;
        auth-cluster) auth=required; redis=2; sess=$'  cache_ttl: 0s\n  negative_cache_ttl: 0s' ;;
        rl-global) redis=1
            rl='    rate_limit: [{ key: ip, rate: "100000000/s", burst: 100000000, scope: global }]' ;;
        rl-global-cluster) redis=2
            rl='    rate_limit: [{ key: ip, rate: "100000000/s", burst: 100000000, scope: global }]' ;;
        rl-global-keys) redis=1
            rl='    rate_limit: [{ key: "header:X-Client", rate: "100000000/s", burst: 100000000, scope: global }]' ;;
        up-health) up='    health: { path: /, interval: 500ms }' ;;
        up-admission) up=$'    health: { path: /, interval: 500ms }\n    admission: { max_in_flight: 10000, max_in_flight_per_tenant: 5000 }' ;;
    esac
    sed -e "s|{{RUN}}|$RUN|g" -e "s|{{PORT}}|$MOAT_PORT|g" -e "s|{{ADMIN}}|$ADMIN_PORT|g" \
        -e "s|{{CERT}}|$CERTS/server.crt|g" -e "s|{{KEY}}|$CERTS/server.key|g" \
        -e "s|{{TICKETS}}|true|g" -e "s|{{UPSTREAM}}|127.0.0.1:$UP_PORT|g" \
        -e "s|^    auth: none\$|    auth: $auth|" scripts/bench/moat.yaml >"$f"
    grep -q "^    auth: $auth\$" "$f" || { echo "bench: could not set auth in $f" >&2; exit 1; }
    if [ -n "$rl" ]; then
        awk -v rl="$rl" '{print} /^    auth: / {print rl}' "$f" >"$f.tmp" && mv "$f.tmp" "$f"
    fi
    if [ -n "$up" ]; then
        awk -v up="$up" '{print} /^    keepalive: / {print up}' "$f" >"$f.tmp" && mv "$f.tmp" "$f"
        grep -q "^    health: " "$f" || { echo "bench: could not set health in $f" >&2; exit 1; }
    fi
    if [ "$redis" -ge 1 ]; then
        {
            echo "redis:"
            if [ "$redis" -eq 2 ]; then
                echo "  mode: cluster"
                echo "  cluster:"
                echo "    seeds: [$(printf '"127.0.0.1:%s", ' "${CLUSTER_PORTS[@]}" | sed 's/, $//')]"
            else
                echo "  address: \"127.0.0.1:$REDIS_PORT\""
            fi
            echo "ratelimit:"
            echo "  redis_timeout: 200ms"
            if [ -n "$sess" ]; then echo "sessions:"; echo "$sess"; fi
        } >>"$f"
    fi
    "$MOAT" -t -c "$f" >"$RUN/logs/validate-$c.txt" 2>&1 ||
        { echo "bench: $f does not validate:" >&2; cat "$RUN/logs/validate-$c.txt" >&2; exit 1; }
    echo "$f"
}

metric() { # NAME [LABEL="VALUE"] -> the sum of its series (with that label), 0 when absent
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk -v n="$1" -v f="${2:-}" '($1 == n || index($1, n"{") == 1) && (f == "" || index($1, f)) {s += $2}
            END {printf "%d\n", s}'
}

CONFIG="" # the config running: its Redis (the single one, or the cluster's nodes)
rclis() { # ARGS: the command on each Redis of $CONFIG (one output after the other)
    local p
    if is_cluster "$CONFIG"; then
        for p in "${CLUSTER_PORTS[@]}"; do redis-cli -h 127.0.0.1 -p "$p" "$@"; done
    else
        "${RCLI[@]}" "$@"
    fi
}

rl_keys_del() { # the moat:rl:* keys of every Redis (one DEL per key: a cluster refuses cross-slot)
    local p ps=("$REDIS_PORT")
    [ "$cluster" -eq 1 ] && ps+=("${CLUSTER_PORTS[@]}")
    for p in "${ps[@]}"; do
        redis-cli -h 127.0.0.1 -p "$p" --scan --pattern 'moat:rl:*' |
            xargs -r -n1 redis-cli -h 127.0.0.1 -p "$p" del >/dev/null
    done
}

redis_cpu_ticks() { # utime+stime of the Redis process(es) of $CONFIG
    local p t=0
    if is_cluster "$CONFIG"; then
        for p in "${CLUSTER_PIDS[@]}"; do t=$(( t + $(cpu_ticks "$p") )); done
        echo "$t"
    else
        cpu_ticks "$REDIS_PID"
    fi
}

redis_calls() { # EVAL + EVALSHA + HGETALL calls served by Redis so far
    rclis info commandstats | tr -d '\r' |
        awk -F'[:=,]' '$1 ~ /^cmdstat_(eval|evalsha|hgetall)$/ {s += $3} END {printf "%d\n", s}'
}

run_one() { # ROUND CONFIG
    local r="$1" c="$2" conf f="$RUN/raw/$2-r$1.txt" errf="$RUN/logs/moat-$2-r$1.stderr"
    local hdr=()
    conf="$(render_conf "$c")"
    CONFIG="$c"
    case "$c" in auth-*) hdr=(-H "Authorization: Bearer $TOKEN") ;; esac
    local wrk_script=()
    [ "$c" = rl-global-keys ] && wrk_script=(-s "$ROOT/scripts/bench/client_keys.lua")
    [ "$c" != "${c#rl-global}" ] && rl_keys_del
    taskset -c 1 "$MOAT" -c "$conf" >"$errf" 2>&1 &
    local pid=$! i code=""
    PIDS+=("$pid")
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { echo "bench: moat ($c) exited at start:" >&2; cat "$errf" >&2; exit 1; }
        code="$(curl -sk -o /dev/null -w '%{http_code}' "${hdr[@]}" "https://127.0.0.1:$MOAT_PORT/" 2>/dev/null || true)"
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    [ "$code" = 200 ] || { echo "bench: moat ($c) not answering 200 (got '$code')" >&2; cat "$errf" >&2; exit 1; }
    if [ "$c" != "${c#auth-}" ]; then # without the token: refused
        code="$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$MOAT_PORT/" || true)"
        [ "$code" = 401 ] || [ "$code" = 403 ] || [ "$code" = 302 ] ||
            { echo "bench: moat ($c) answered $code without a token" >&2; exit 1; }
    fi
    taskset -c 0 wrk -t1 -c64 -d2s "${hdr[@]}" "https://127.0.0.1:$MOAT_PORT/" >/dev/null 2>&1 # warm-up
    local m2 m4 m5 mh mre c0 c1 rc0 rc1
    local rq=moat_http_requests_total ae='reason="store_unavailable"'
    m2="$(metric $rq 'code_class="2xx"')"; m4="$(metric $rq 'code_class="4xx"')"
    m5="$(metric $rq 'code_class="5xx"')"; mh="$(metric moat_auth_cache_hits_total)"
    mre="$(metric moat_auth_results_total "$ae")"
    local mgd mfb
    mgd="$(metric moat_ratelimit_global_decisions_total)"; mfb="$(metric moat_ratelimit_store_fallbacks_total)"
    result "$r" "$c" loadavg "$(cut -d' ' -f1 /proc/loadavg)"
    local ev0 ev1 spid=""
    ev0="$(redis_calls)"
    if [ "$c" != "${c#rl-global}" ]; then # sample the keys in the middle of the run
        (sleep "$(awk -v d="$duration" 'BEGIN {print d / 2}')"
         rclis --scan --pattern 'moat:rl:*' >"$RUN/raw/$c-keys-midrun-r$r.txt") &
        spid=$!
        PIDS+=("$spid")
    fi
    c0="$(cpu_ticks "$pid")"; rc0="$(redis_cpu_ticks)"
    taskset -c 0 wrk -t1 -c64 -d"${duration}s" "${hdr[@]}" "${wrk_script[@]}" "https://127.0.0.1:$MOAT_PORT/" >"$f" 2>&1
    c1="$(cpu_ticks "$pid")"; rc1="$(redis_cpu_ticks)"
    ev1="$(redis_calls)"
    [ -n "$spid" ] && stop_pid "$spid"
    local reqs rps sockerr non2xx d2 d4 d5 dh dre
    reqs="$(awk '/requests in/ {print $1}' "$f")"
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$f")"
    sockerr="$(awk '/Socket errors:/ {gsub(/,/,""); print $4+$6+$8+$10}' "$f")"
    non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$f")"
    [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { echo "bench: wrk failed against $c:" >&2; cat "$f" >&2; exit 1; }
    d2=$(( $(metric $rq 'code_class="2xx"') - m2 )); d4=$(( $(metric $rq 'code_class="4xx"') - m4 ))
    d5=$(( $(metric $rq 'code_class="5xx"') - m5 )); dh=$(( $(metric moat_auth_cache_hits_total) - mh ))
    dre=$(( $(metric moat_auth_results_total "$ae") - mre ))
    local cpu_us=$(( (c1 - c0) * 1000000 / HZ )) rcpu_us=$(( (rc1 - rc0) * 1000000 / HZ ))
    local errors=$(( ${sockerr:-0} + ${non2xx:-0} ))
    echo "moat counters during the run: 2xx=$d2 4xx=$d4 5xx=$d5 auth_cache_hits=$dh auth_redis_errors=$dre" >>"$f"
    echo "moat_cpu_us=$cpu_us redis_cpu_us=$rcpu_us" >>"$f"
    local dev=$(( ev1 - ev0 ))
    echo "redis EVAL/EVALSHA/HGETALL calls during the run: $dev" >>"$f"
    result "$r" "$c" redis_calls "$dev"
    result "$r" "$c" redis_calls_per_req "$(awk -v c="$dev" -v n="$reqs" 'BEGIN {printf "%.3f", c/n}')"
    if [ "$c" != "${c#rl-global}" ]; then
        local nkeys nmid
        rclis --scan --pattern 'moat:rl:*' >"$RUN/raw/$c-keys-r$r.txt"
        nkeys="$(wc -l <"$RUN/raw/$c-keys-r$r.txt")"
        nmid="$(grep -vc ':instances$' "$RUN/raw/$c-keys-midrun-r$r.txt" || true)"
        echo "redis moat:rl:* keys: $nmid rule keys mid-run, $nkeys keys after the run (moat still up)" >>"$f"
        result "$r" "$c" redis_rl_keys "$nkeys"
        result "$r" "$c" redis_rl_rule_keys_midrun "$nmid"
        rclis info commandstats >"$RUN/raw/redis-commandstats-$c-r$r.txt"
        [ "$nkeys" -gt 0 ] || { echo "bench: rl-global: no moat:rl:* key in Redis" >&2; exit 1; }
        # every request decided by Redis (batched: requests for one key share a call), none by the fallback
        local dgd=$(( $(metric moat_ratelimit_global_decisions_total) - mgd ))
        local dfb=$(( $(metric moat_ratelimit_store_fallbacks_total) - mfb ))
        echo "global decisions by Redis: $dgd, by on_store_error: $dfb, script calls: $dev" >>"$f"
        [ "$dfb" -eq 0 ] && [ "$dgd" -ge "$reqs" ] && [ "$dev" -ge 1 ] ||
            { echo "bench: rl-global: $dgd Redis decisions, $dfb fallbacks for $reqs requests" >&2; exit 1; }
    fi
    result "$r" "$c" rps "$rps"
    result "$r" "$c" requests "$reqs"
    result "$r" "$c" cpu_us_per_req "$(awk -v c="$cpu_us" -v n="$reqs" 'BEGIN {printf "%.2f", c/n}')"
    result "$r" "$c" redis_cpu_us_per_req "$(awk -v c="$rcpu_us" -v n="$reqs" 'BEGIN {printf "%.2f", c/n}')"
    result "$r" "$c" errors "$errors"
    result "$r" "$c" moat_4xx "$d4"
    result "$r" "$c" moat_5xx "$d5"
    result "$r" "$c" auth_cache_hits "$dh"
    log "round $r $c: $rps req/s, $(awk -v c="$cpu_us" -v n="$reqs" 'BEGIN {printf "%.1f", c/n}') us moat CPU/req, $(awk -v c="$rcpu_us" -v n="$reqs" 'BEGIN {printf "%.1f", c/n}') us redis CPU/req, wrk errors $errors, moat 4xx=$d4 5xx=$d5 cache_hits=$dh"
    stop_pid "$pid"
    # moat's 4xx counter also counts the requests cut off when wrk closes its connections
    # at the end (a few dozen); wrk's own count of non-2xx responses is the check.
    [ "$errors" -eq 0 ] && [ "$d5" -eq 0 ] ||
        { echo "bench: $c: wrk saw $errors errors / non-2xx (moat 5xx=$d5), see $f" >&2; exit 1; }
}

read -r -a clist <<<"$configs"
n=${#clist[@]}
for r in $(seq "$rounds"); do
    order=()
    for i in $(seq 0 $((n - 1))); do order+=("${clist[$(( (i + r - 1) % n ))]}"); done
    log "round $r/$rounds, order: ${order[*]}"
    for c in "${order[@]}"; do run_one "$r" "$c"; done
done
cleanup

"$PY" - "$RES" "$configs" <<'EOF' | tee "$RUN/summary.md"
import sys, statistics
res, configs = sys.argv[1], sys.argv[2].split()
vals = {}
for line in open(res):
    r, c, m, v = line.rstrip("\n").split("\t")
    try:
        vals.setdefault((c, m), []).append(float(v))
    except ValueError:
        pass
med = lambda c, m: statistics.median(vals[(c, m)]) if (c, m) in vals else None
base = med("base", "rps")
n = len(vals.get((configs[0], "rps"), []))
print(f"## moat feature costs (medians of {n} round(s), wrk -t1 -c64 keep-alive)\n")
print("| config | req/s | x base | moat CPU us/req | Redis CPU us/req | Redis calls/req | errors |")
print("|---|---:|---:|---:|---:|---:|---:|")
for c in configs:
    rps = med(c, "rps")
    if rps is None:
        continue
    ratio = f"{rps / base:.3f}" if base and rps else "-"
    err = int(sum(vals.get((c, "errors"), [0])))
    print(f"| {c} | {rps:,.0f} | {ratio} | {med(c, 'cpu_us_per_req'):.2f} | {med(c, 'redis_cpu_us_per_req'):.2f} | {med(c, 'redis_calls_per_req'):.3f} | {err} |")
# (config, metric, bound, issue): throughput at least bound x base, or CPU per request
# at most bound x base
targets = [("auth-cache", "rps", 0.90, "issue 4"), ("rl-local", "rps", 0.95, "issue 6"),
           ("rl-global", "rps", 0.85, "issue 6"), ("up-health", "cpu_us_per_req", 1.03, "issue 14"),
           ("up-admission", "cpu_us_per_req", 1.03, "issue 14")]
print("\n| target | ratio | verdict |")
print("|---|---:|---|")
for c, m, t, why in targets:
    what = f"{c} >= {t:.2f}x base" if m == "rps" else f"{c} CPU/req <= {t:.2f}x base"
    v, b = med(c, m), med("base", m)
    if not b or v is None:
        print(f"| {what} ({why}) | - | not measured |")
        continue
    ratio = v / b
    met = ratio >= t if m == "rps" else ratio <= t
    print(f"| {what} ({why}) | {ratio:.3f} | {'met' if met else 'NOT met'} |")
# cluster mode against single mode (issue 17): within 5 % both ways
pairs = [("auth-cluster", "auth-nocache"), ("rl-global-cluster", "rl-global")]
for c, ref in pairs:
    for m, t in (("rps", 0.95), ("cpu_us_per_req", 1.05)):
        what = (f"{c} req/s >= {t:.2f}x {ref}" if m == "rps"
                else f"{c} CPU/req <= {t:.2f}x {ref}")
        v, b = med(c, m), med(ref, m)
        if not b or v is None:
            print(f"| {what} (issue 17) | - | not measured |")
            continue
        ratio = v / b
        met = ratio >= t if m == "rps" else ratio <= t
        print(f"| {what} (issue 17) | {ratio:.3f} | {'met' if met else 'NOT met'} |")
la = vals.get(("base", "loadavg"), [])
if la:
    print(f"\nload average (1 min) during base runs: {', '.join(f'{x:.2f}' for x in la)}")
EOF
echo "raw output: $RUN" >&2
