#!/usr/bin/env bash
# moat vs HAProxy vs nginx: same TLS policy, same upstream, interleaved rounds.
#
#   scripts/bench.sh [--rounds N] [--duration S] [--quick] [--targets "moat haproxy nginx"]
#                    [--idle-conns N] [--nice N] [--profile] [--no-build] [--out DIR]
#                    [--tests "keepalive body16k ..."]
#   scripts/bench.sh --features [...]   moat alone: cost of auth (session cache / Redis)
#                    and rate limiting (local / global); see scripts/bench/features.sh --help
#
#   --rounds N      rounds; every round runs every test on every target (default 3)
#   --duration S    seconds per measured load run (default 10)
#   --quick         smoke run: 1 round, 3 s runs, 250 idle connections
#   --targets LIST  which proxies (default "moat haproxy nginx")
#   --tests LIST    which tests (default all: keepalive body16k body256k upload1m h2
#                   full-rsa full-ec resumed idle idle-hs)
#   --idle-conns N  idle TLS connections held for the memory test (default 1000)
#   --nice N        run proxies, load generators and upstream at this nice level, and
#                   give this script's scheduler autogroup the same nice value for the
#                   run (restored at exit); e.g. -10 on a machine busy with other work,
#                   where with autogroups (kernel.sched_autogroup_enabled=1) a plain
#                   nice does nothing against other sessions. Default 0.
#   --profile       after the rounds (--rounds 0: instead of them), profile each proxy
#                   under the keep-alive load: perf record (cpu-clock) hotspots, a
#                   call-graph view for moat, and syscalls per request (perf stat);
#                   with --tests, under the load of each of its wrk tests
#                   (keepalive body16k body256k upload1m) instead
#   --no-build      use build-bench/moat as it is (not needed when moat is not a target)
#   --out DIR       raw output directory (default bench-results/YYYYmmdd-HHMMSS)
#
# Each proxy runs one worker pinned to CPU 1; the load generator (wrk, h2load, tlsload)
# and the shared upstream (nginx answering a 64-byte body) are pinned to CPU 0. Tests,
# per round and per target (the target order rotates every round):
#   keepalive   wrk -t1 -c64 over HTTPS keep-alive: req/s, p99, proxy CPU per request,
#               errors (socket errors, non-2xx) and, for moat, its own 2xx/5xx counters
#   body16k     the same for a 16 KiB response body (GET /16k, a static file upstream)
#   body256k    the same for a 256 KiB response body (GET /256k)
#   upload1m    the same for a 1 MiB request body (POST /upload, scripts/bench/upload1m.lua)
#   h2          h2load -c 64 -m 10 over HTTP/2 (ALPN h2 only, no fallback to HTTP/1.1):
#               req/s, p99 (from h2load --log-file, one line per request), proxy CPU
#               per request, errors (h2load's failed + timed-out requests). A proxy
#               that does not negotiate h2 gets "n/a" in the table, not a failed run.
#   full-rsa    full TLS handshakes/s, RSA-2048 certificate, tickets and session caches
#   full-ec     off on every proxy; ECDSA P-256 certificate. The client (tlsload) offers
#               the previous session on every connection: "resumed" must stay 0.
#   resumed     handshakes/s with tickets (and caches) on; share of them resumed
#   idle        VmRSS of the proxy before/after holding N idle TLS connections, each
#               after one keep-alive request
#   idle-hs     the same, each connection held right after its handshake (no request)
# plus, once, `openssl speed rsa2048 ecdsap256 ecdhx25519` on CPU 1 (the signing ceiling).
# Prints the table of medians and ratios moat/HAProxy; raw output, rendered configs
# and summary.md go to the output directory (bench-results/ is gitignored).
#
# Needs: haproxy, nginx (with http_v2), wrk, h2load (nghttp2-client), taskset, openssl,
# cc + libssl-dev, /usr/bin/python3 (scripts/install-deps.sh --bench), and 2 CPUs.
# Listens on 127.0.0.1:18080 (upstream), 18443 (moat), 18444 (haproxy), 18445 (nginx),
# 18901 (moat admin).
set -euo pipefail
for a in "$@"; do
    if [ "$a" = --features ]; then
        args=()
        for b in "$@"; do [ "$b" = --features ] || args+=("$b"); done
        exec "$(dirname "$0")/bench/features.sh" "${args[@]}"
    fi
done
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

rounds=3
duration=10
idle_conns=1000
targets="moat haproxy nginx"
ALL_TESTS="keepalive body16k body256k upload1m h2 full-rsa full-ec resumed idle idle-hs"
tests="$ALL_TESTS"
build=1
out=""
quick=0
nice_level=0
profile=0
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift ;;
        --duration) duration="$2"; shift ;;
        --quick) quick=1 ;;
        --targets) targets="$2"; shift ;;
        --tests) tests="$2"; shift ;;
        --idle-conns) idle_conns="$2"; shift ;;
        --nice) nice_level="$2"; shift ;;
        --profile) profile=1 ;;
        --no-build) build=0 ;;
        --out) out="$2"; shift ;;
        -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
        *) echo "bench: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$quick" -eq 1 ]; then
    rounds=1; duration=3; idle_conns=250
fi
case "$rounds$duration$idle_conns" in *[!0-9]*) echo "bench: --rounds, --duration, --idle-conns take integers" >&2; exit 2 ;; esac
[ "$rounds" -ge $(( 1 - profile )) ] && [ "$duration" -ge 1 ] && [ "$idle_conns" -ge 1 ] || { echo "bench: values must be >= 1" >&2; exit 2; }

case "$nice_level" in -[0-9]*|[0-9]*) ;; *) echo "bench: --nice takes an integer" >&2; exit 2 ;; esac
NICE=()
[ "$nice_level" != 0 ] && NICE=(nice -n "$nice_level")

PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"
need=(haproxy nginx wrk h2load taskset openssl cc curl)
[ "$profile" -eq 1 ] && need+=(perf)
for cmd in "${need[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
        echo "bench: $cmd not found: run scripts/install-deps.sh --bench" >&2
        exit 1
    fi
done
export PATH="$PATH:/usr/sbin"
if [ "$(nproc)" -lt 2 ]; then
    echo "bench: needs 2 CPUs (proxy on CPU 1, load on CPU 0)" >&2
    exit 1
fi

UP_PORT=18080
ADMIN_PORT=18901
declare -A PORT=([moat]=18443 [haproxy]=18444 [nginx]=18445)
for t in $targets; do
    [ -n "${PORT[$t]:-}" ] || { echo "bench: unknown target $t" >&2; exit 2; }
done
for t in $tests; do
    case " $ALL_TESTS " in *" $t "*) ;; *) echo "bench: unknown test $t" >&2; exit 2 ;; esac
done
want() { case " $tests " in *" $1 "*) return 0 ;; esac; return 1; }
# The wrk tests: name -> URL path and wrk script (none: GET).
declare -A WRK_PATH=([keepalive]=/ [body16k]=/16k [body256k]=/256k [upload1m]=/upload)
declare -A WRK_SCRIPT=([upload1m]="$(pwd)/scripts/bench/upload1m.lua")

# ---------------------------------------------------------------- setup
ts="$(date +%Y%m%d-%H%M%S)"
RUN="${out:-bench-results/$ts}"
mkdir -p "$RUN"
RUN="$(cd "$RUN" && pwd)"
RES="$RUN/results.tsv"
: >"$RES"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$RUN/bench.log" >&2; }

scripts/gen-dev-certs.sh >/dev/null
CERTS="$ROOT/certs/dev"

has_moat=0
case " $targets " in *" moat "*) has_moat=1 ;; esac
if [ "$build" -eq 1 ] && [ "$has_moat" -eq 1 ]; then
    # The benchmark build is not where warnings are policed (the default build
    # is): a warning another compiler version adds at -O3 must not stop a run.
    if [ ! -f build-bench/build.ninja ]; then
        meson setup build-bench --buildtype=release -Db_ndebug=true -Dwerror=false >"$RUN/build.log" 2>&1
    fi
    for try in 1 2 3 4 5; do
        if ninja -C build-bench moat >>"$RUN/build.log" 2>&1; then break; fi
        [ "$try" -eq 5 ] && { echo "bench: build failed, see $RUN/build.log" >&2; exit 1; }
        log "build failed (src/ may be mid-edit); retrying in 60 s"
        sleep 60
    done
fi
MOAT="$ROOT/build-bench/moat"
[ "$has_moat" -eq 0 ] || [ -x "$MOAT" ] || { echo "bench: $MOAT missing (drop --no-build)" >&2; exit 1; }
cc -O2 -o "$RUN/tlsload" scripts/bench/tlsload.c -lssl -lcrypto
TLSLOAD="$RUN/tlsload"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$p" 2>/dev/null || true
    done
    PIDS=()
}
AUTOGROUP_OLD=""
if [ "$nice_level" != 0 ] && [ -w /proc/$$/autogroup ]; then
    AUTOGROUP_OLD="$(sed -n 's/.* nice \(-*[0-9]*\)$/\1/p' /proc/$$/autogroup)"
    echo "$nice_level" >/proc/$$/autogroup 2>/dev/null || AUTOGROUP_OLD=""
fi
restore_autogroup() {
    if [ -n "$AUTOGROUP_OLD" ]; then echo "$AUTOGROUP_OLD" >/proc/$$/autogroup 2>/dev/null || true; fi
}
trap 'cleanup; restore_autogroup' EXIT
trap 'exit 130' INT TERM

stop_pid() { # PID: TERM, wait up to 5 s, KILL; forget it
    local p="$1" i
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    local keep=() q
    for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    PIDS=("${keep[@]}")
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$UP_PORT" "$ADMIN_PORT" "${PORT[@]}"; do
    port_free "$p" || { echo "bench: 127.0.0.1:$p is in use" >&2; exit 1; }
done

render() { # TEMPLATE OUT KEY=VALUE...
    local tpl="$1" outf="$2" kv args=()
    shift 2
    for kv in "$@"; do args+=(-e "s|{{${kv%%=*}}}|${kv#*=}|g"); done
    sed "${args[@]}" "$tpl" >"$outf"
}

cpu_ticks() { # PID -> utime+stime in clock ticks (whole process, every thread)
    local s
    s="$(cat "/proc/$1/stat")"
    s="${s##*) }"
    set -- $s
    echo $(( ${12} + ${13} ))
}
minor_faults() { # PID -> page faults (minor) of the whole process so far
    local s
    s="$(cat "/proc/$1/stat")"
    s="${s##*) }"
    set -- $s
    echo "$8"
}
HZ="$(getconf CLK_TCK)"
cpu1_busy() { # ticks CPU 1 spent not idle (every process, interrupts included)
    awk '$1 == "cpu1" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}
other_pct() { # BUSY0 BUSY1 PROXY0 PROXY1 SECONDS -> % of CPU 1 used outside the proxy
    awk -v b=$(( $2 - $1 )) -v p=$(( $4 - $3 )) -v hz="$HZ" -v d="$5" 'BEGIN {v = (b - p) / hz / d * 100; if (v < 0) v = 0; printf "%.0f", v}'
}
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

result() { echo -e "$1\t$2\t$3\t$4\t$5" >>"$RES"; } # round target test metric value

# ---------------------------------------------------------------- upstream
mkdir -p "$RUN/upstream-tmp" "$RUN/logs" "$RUN/nginx-tmp/logs" "$RUN/static"
head -c 16384 /dev/urandom >"$RUN/static/16k"
head -c 262144 /dev/urandom >"$RUN/static/256k"
render scripts/bench/upstream-nginx.conf "$RUN/upstream.conf" RUN="$RUN" PORT="$UP_PORT"
"${NICE[@]}" taskset -c 0 nginx -p "$RUN" -c "$RUN/upstream.conf" -g 'daemon off;' 2>>"$RUN/upstream.stderr" &
PIDS+=($!)
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$UP_PORT/" && break
    sleep 0.1
done
body="$(curl -s "http://127.0.0.1:$UP_PORT/")" || { echo "bench: upstream did not start" >&2; exit 1; }
[ "$(curl -s "http://127.0.0.1:$UP_PORT/" | wc -c)" -eq 64 ] || { echo "bench: upstream body is not 64 bytes" >&2; exit 1; }
[ "$(curl -s "http://127.0.0.1:$UP_PORT/16k" | wc -c)" -eq 16384 ] || { echo "bench: upstream /16k is not 16 KiB" >&2; exit 1; }

cat "$CERTS/server.crt" "$CERTS/server.key" >"$RUN/rsa.pem"
cat "$CERTS/server-ec.crt" "$CERTS/server-ec.key" >"$RUN/ec.pem"
chmod 600 "$RUN/rsa.pem" "$RUN/ec.pem"

# ---------------------------------------------------------------- proxies
PROXY_PID=""  # the process measured (moat, haproxy, the nginx worker)
MAIN_PID=""   # the process started (stopped afterwards)
start_proxy() { # TARGET MODE(tickets|notickets) CERT(rsa|ec) TAG
    local t="$1" mode="$2" cert="$3" tag="$4" crt key pem on
    if [ "$cert" = rsa ]; then crt="$CERTS/server.crt"; key="$CERTS/server.key"; pem="$RUN/rsa.pem"
    else crt="$CERTS/server-ec.crt"; key="$CERTS/server-ec.key"; pem="$RUN/ec.pem"; fi
    local conf="$RUN/conf/$t-$mode-$cert" errf="$RUN/logs/$t-$tag.stderr"
    mkdir -p "$RUN/conf" "$RUN/logs"
    case "$t" in
        moat)
            [ "$mode" = tickets ] && on=true || on=false
            render scripts/bench/moat.yaml "$conf.yaml" RUN="$RUN" PORT="${PORT[moat]}" \
                ADMIN="$ADMIN_PORT" CERT="$crt" KEY="$key" TICKETS="$on" UPSTREAM="127.0.0.1:$UP_PORT"
            "${NICE[@]}" taskset -c 1 "$MOAT" -c "$conf.yaml" >"$errf" 2>&1 &
            MAIN_PID=$!; PROXY_PID=$MAIN_PID ;;
        haproxy)
            if [ "$mode" = tickets ]; then
                render scripts/bench/haproxy.cfg "$conf.cfg" RUN="$RUN" PORT="${PORT[haproxy]}" \
                    CERTPEM="$pem" UPSTREAM="127.0.0.1:$UP_PORT" TLSOPTS="" CACHESIZE=20000
            else
                render scripts/bench/haproxy.cfg "$conf.cfg" RUN="$RUN" PORT="${PORT[haproxy]}" \
                    CERTPEM="$pem" UPSTREAM="127.0.0.1:$UP_PORT" TLSOPTS="no-tls-tickets" CACHESIZE=0
            fi
            "${NICE[@]}" taskset -c 1 haproxy -f "$conf.cfg" -db >"$errf" 2>&1 &
            MAIN_PID=$!; PROXY_PID=$MAIN_PID ;;
        nginx)
            if [ "$mode" = tickets ]; then
                render scripts/bench/nginx.conf "$conf.conf" RUN="$RUN" PORT="${PORT[nginx]}" \
                    CERT="$crt" KEY="$key" UPSTREAM="127.0.0.1:$UP_PORT" TICKETS=on CACHE="shared:SSL:10m"
            else
                render scripts/bench/nginx.conf "$conf.conf" RUN="$RUN" PORT="${PORT[nginx]}" \
                    CERT="$crt" KEY="$key" UPSTREAM="127.0.0.1:$UP_PORT" TICKETS=off CACHE=off
            fi
            "${NICE[@]}" taskset -c 1 nginx -p "$RUN/nginx-tmp" -c "$conf.conf" -g 'daemon off;' >"$errf" 2>&1 &
            MAIN_PID=$!; PROXY_PID="" ;;
    esac
    PIDS+=("$MAIN_PID")
    local i code=""
    for i in $(seq 100); do
        if ! kill -0 "$MAIN_PID" 2>/dev/null; then
            wait "$MAIN_PID" 2>/dev/null || true
            if grep -q 'Address already in use' "$errf" && [ "${START_TRY:-0}" -lt 5 ]; then
                # Seen once with moat right after a previous run; retry a few times.
                log "$t could not bind :${PORT[$t]} (Address already in use), retrying in 3 s"
                cat "$errf" >>"$RUN/logs/bind-failures.txt"
                sleep 3
                START_TRY=$(( ${START_TRY:-0} + 1 )) start_proxy "$@"
                return
            fi
            echo "bench: $t exited at start:" >&2; cat "$errf" >&2; exit 1
        fi
        # HTTP/1.1 like wrk and tlsload (every proxy offers h2 by ALPN, curl would take it)
        code="$(curl -sk --http1.1 -o "$RUN/logs/$t-$tag.body" -w '%{http_code}' "https://127.0.0.1:${PORT[$t]}/" 2>/dev/null || true)"
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    [ "$code" = 200 ] || { echo "bench: $t not answering 200 on :${PORT[$t]} (got '$code')" >&2; cat "$errf" >&2; exit 1; }
    cmp -s "$RUN/logs/$t-$tag.body" <(curl -s "http://127.0.0.1:$UP_PORT/") ||
        { echo "bench: $t returned a different body than the upstream" >&2; exit 1; }
    [ -s "$RUN/raw/response-headers-$t.txt" ] ||
        curl -sk --http1.1 -D "$RUN/raw/response-headers-$t.txt" -o /dev/null "https://127.0.0.1:${PORT[$t]}/" || true
    if [ "$t" = nginx ]; then
        PROXY_PID="$(pgrep -P "$MAIN_PID" | head -1)"
        [ -n "$PROXY_PID" ] || { echo "bench: no nginx worker" >&2; exit 1; }
    fi
}
stop_proxy() { stop_pid "$MAIN_PID"; MAIN_PID=""; PROXY_PID=""; }

moat_metric() { # NAME [LABEL="VALUE"] -> the sum of its series (with that label), 0 when absent
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk -v n="$1" -v f="${2:-}" '($1 == n || index($1, n"{") == 1) && (f == "" || index($1, f)) {s += $2}
            END {printf "%d\n", s}'
}

# ---------------------------------------------------------------- tests
wrk_args() { # TEST -> wrk's script option, if any
    [ -z "${WRK_SCRIPT[$1]:-}" ] || echo "-s ${WRK_SCRIPT[$1]}"
}
test_keepalive() { # ROUND TARGET [TEST]: keepalive, or one of the other wrk tests
    local r="$1" t="$2" k="${3:-keepalive}" f="$RUN/raw/${3:-keepalive}-$2-r$1.txt"
    local url="https://127.0.0.1:${PORT[$t]}${WRK_PATH[$k]}"
    start_proxy "$t" tickets rsa "$k-r$r"
    # shellcheck disable=SC2046
    "${NICE[@]}" taskset -c 0 wrk -t1 -c64 -d2s $(wrk_args "$k") "$url" >/dev/null 2>&1 # warm-up
    local m2=0 m5=0 me=0
    if [ "$t" = moat ]; then
        m2="$(moat_metric moat_http_requests_total 'code_class="2xx"')"; m5="$(moat_metric moat_http_requests_total 'code_class="5xx"')"
        me="$(moat_metric moat_upstream_errors_total)"
    fi
    local c0 c1 b0 b1 f0 f1
    result "$r" "$t" "$k" loadavg "$(cut -d' ' -f1 /proc/loadavg)"
    b0="$(cpu1_busy)"; c0="$(cpu_ticks "$PROXY_PID")"; f0="$(minor_faults "$PROXY_PID")"
    "${NICE[@]}" taskset -c 0 wrk -t1 -c64 -d"${duration}s" --latency $(wrk_args "$k") "$url" >"$f" 2>&1
    c1="$(cpu_ticks "$PROXY_PID")"; b1="$(cpu1_busy)"; f1="$(minor_faults "$PROXY_PID")"
    result "$r" "$t" "$k" cpu1_other_pct "$(other_pct "$b0" "$b1" "$c0" "$c1" "$duration")"
    local reqs rps p99 sockerr non2xx
    reqs="$(awk '/requests in/ {print $1}' "$f")"
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$f")"
    p99="$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}' "$f")"
    sockerr="$(awk '/Socket errors:/ {gsub(/,/,""); print $4+$6+$8+$10}' "$f")"
    non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$f")"
    [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { echo "bench: wrk failed against $t:" >&2; cat "$f" >&2; exit 1; }
    local cpu_us=$(( (c1 - c0) * 1000000 / HZ ))
    result "$r" "$t" "$k" rps "$rps"
    result "$r" "$t" "$k" p99_ms "$p99"
    result "$r" "$t" "$k" requests "$reqs"
    result "$r" "$t" "$k" cpu_us_per_req "$(awk -v c="$cpu_us" -v n="$reqs" 'BEGIN {printf "%.2f", c/n}')"
    result "$r" "$t" "$k" cpu_util "$(awk -v c="$cpu_us" -v d="$duration" 'BEGIN {printf "%.2f", c/1e6/d}')"
    result "$r" "$t" "$k" errors "$(( ${sockerr:-0} + ${non2xx:-0} ))"
    result "$r" "$t" "$k" faults_per_req "$(awk -v f="$(( f1 - f0 ))" -v n="$reqs" 'BEGIN {printf "%.2f", f/n}')"
    if [ "$t" = moat ]; then
        local d2 d5 de
        d2=$(( $(moat_metric moat_http_requests_total 'code_class="2xx"') - m2 ))
        d5=$(( $(moat_metric moat_http_requests_total 'code_class="5xx"') - m5 ))
        de=$(( $(moat_metric moat_upstream_errors_total) - me ))
        echo "moat counters during the run: 2xx=$d2 5xx=$d5 upstream_errors=$de (wrk: $reqs requests)" >>"$f"
        result "$r" "$t" "$k" moat_5xx "$d5"
        result "$r" "$t" "$k" moat_upstream_errors "$de"
        # wrk counts only completed responses; moat may have answered up to 64 more.
        [ "$d2" -ge "$reqs" ] && [ "$d2" -le $(( reqs + 64 )) ] || result "$r" "$t" "$k" moat_count_mismatch 1
    fi
    log "round $r $k $t: $rps req/s, p99 ${p99} ms, $(awk -v c="$cpu_us" -v n="$reqs" 'BEGIN {printf "%.1f", c/n}') us CPU/req, errors $(( ${sockerr:-0} + ${non2xx:-0} ))"
    stop_proxy
}

H2LOAD=(h2load -c 64 -m 10 --npn-list=h2)  # h2 only: no silent fallback to HTTP/1.1
test_h2() { # ROUND TARGET
    local r="$1" t="$2" f="$RUN/raw/h2-$2-r$1.txt" lf="$RUN/raw/h2-$2-r$1.log"
    start_proxy "$t" tickets rsa "h2-r$r"
    # Warm-up; it also tells whether the proxy speaks h2 at all (ALPN h2 negotiated and
    # responses received). A proxy that does not is recorded as such and skipped.
    "${NICE[@]}" taskset -c 0 timeout 20 "${H2LOAD[@]}" -D 2 "https://127.0.0.1:${PORT[$t]}/" \
        >"$RUN/raw/h2-$t-r$r-warmup.txt" 2>&1 || true
    if ! h2_spoken "$RUN/raw/h2-$t-r$r-warmup.txt"; then
        h2_unavailable "$r" "$t" "$RUN/raw/h2-$t-r$r-warmup.txt"
        stop_proxy
        return
    fi
    local m5=0 me=0
    if [ "$t" = moat ]; then
        m5="$(moat_metric moat_http_requests_total 'code_class="5xx"')"; me="$(moat_metric moat_upstream_errors_total)"
    fi
    local c0 c1 b0 b1
    result "$r" "$t" h2 loadavg "$(cut -d' ' -f1 /proc/loadavg)"
    b0="$(cpu1_busy)"; c0="$(cpu_ticks "$PROXY_PID")"
    # The log file costs h2load one write() per request (on CPU 0, for every target alike).
    rm -f "$lf"
    "${NICE[@]}" taskset -c 0 timeout $(( duration + 30 )) "${H2LOAD[@]}" -D "$duration" --log-file="$lf" \
        "https://127.0.0.1:${PORT[$t]}/" >"$f" 2>&1 || echo "h2load exit status $?" >>"$f"
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
        echo "bench: $t exited during the h2 run" >>"$f"
        h2_unavailable "$r" "$t" "$f"
        stop_proxy
        return
    fi
    c1="$(cpu_ticks "$PROXY_PID")"; b1="$(cpu1_busy)"
    result "$r" "$t" h2 cpu1_other_pct "$(other_pct "$b0" "$b1" "$c0" "$c1" "$duration")"
    if ! h2_spoken "$f"; then
        h2_unavailable "$r" "$t" "$f"
        stop_proxy
        return
    fi
    # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
    local rps ndone ok failed errored tmo lat
    rps="$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$f")"
    ndone="$(sed -n 's/^requests:.* \([0-9]*\) done.*/\1/p' "$f")"
    ok="$(sed -n 's/^requests:.* \([0-9]*\) succeeded.*/\1/p' "$f")"
    failed="$(sed -n 's/^requests:.* \([0-9]*\) failed.*/\1/p' "$f")"
    errored="$(sed -n 's/^requests:.* \([0-9]*\) errored.*/\1/p' "$f")"
    tmo="$(sed -n 's/^requests:.* \([0-9]*\) timeout.*/\1/p' "$f")"
    # p99 (and p50, p99.9, max) of the successful requests, from the per-request log.
    lat="$("$PY" scripts/bench/report.py --h2-log "$lf" 2>>"$f" || true)"
    echo "$lat" >>"$f"
    rm -f "$lf"  # ~30 bytes per request; the percentiles above are kept
    local p99 responses
    p99="$(echo "$lat" | tr ' ' '\n' | sed -n 's/^p99_ms=//p')"
    responses=$(( ${ndone:-0} - ${errored:-0} ))  # streams the proxy answered (any status)
    local cpu_us=$(( (c1 - c0) * 1000000 / HZ )) errors=$(( ${failed:-0} + ${tmo:-0} ))
    result "$r" "$t" h2 negotiated 1
    result "$r" "$t" h2 rps "$rps"
    result "$r" "$t" h2 p99_ms "$p99"
    result "$r" "$t" h2 requests "$responses"
    result "$r" "$t" h2 succeeded "${ok:-0}"
    result "$r" "$t" h2 errors "$errors"
    if [ "$responses" -gt 0 ]; then
        result "$r" "$t" h2 cpu_us_per_req "$(awk -v c="$cpu_us" -v n="$responses" 'BEGIN {printf "%.2f", c/n}')"
    fi
    result "$r" "$t" h2 cpu_util "$(awk -v c="$cpu_us" -v d="$duration" 'BEGIN {printf "%.2f", c/1e6/d}')"
    echo "proxy_cpu_us=$cpu_us responses=$responses errors=$errors" >>"$f"
    if [ "$t" = moat ]; then
        local d5 de
        d5=$(( $(moat_metric moat_http_requests_total 'code_class="5xx"') - m5 ))
        de=$(( $(moat_metric moat_upstream_errors_total) - me ))
        echo "moat counters during the run: 5xx=$d5 upstream_errors=$de" >>"$f"
        result "$r" "$t" h2 moat_5xx "$d5"
        result "$r" "$t" h2 moat_upstream_errors "$de"
    fi
    log "round $r h2 $t: ${rps:-?} req/s, p99 ${p99:-?} ms, $(awk -v c="$cpu_us" -v n="$responses" 'BEGIN {if (n > 0) printf "%.1f", c/n; else printf "?"}') us CPU/req, errors $errors"
    stop_proxy
}
h2_spoken() { # H2LOAD_OUTPUT: h2 negotiated and at least one response received
    grep -q '^Application protocol: h2$' "$1" &&
        [ "$(sed -n 's/^requests:.* \([0-9]*\) succeeded.*/\1/p' "$1")" -gt 0 ] 2>/dev/null
}
h2_unavailable() { # ROUND TARGET H2LOAD_OUTPUT
    local why="no response over h2"
    grep -q 'No protocol negotiated\|No supported protocol was negotiated' "$3" && why="h2 not negotiated (ALPN)"
    grep -q '^Application protocol: ' "$3" && ! grep -q '^Application protocol: h2$' "$3" &&
        why="ALPN chose $(sed -n 's/^Application protocol: //p' "$3" | head -1)"
    grep -q "exited during the h2 run" "$3" && why="$2 exited during the h2 run"
    result "$1" "$2" h2 negotiated 0
    result "$1" "$2" h2 errors "$(sed -n 's/^requests:.* \([0-9]*\) failed.*/\1/p' "$3" | head -1)"
    echo "h2 unavailable: $why" >>"$3"
    echo "$why" >"$RUN/raw/h2-unavailable-$2.txt"
    log "round $1 h2 $2: n/a ($why; see $3)"
}

test_handshake() { # ROUND TARGET KIND(full-rsa|full-ec|resumed)
    local r="$1" t="$2" kind="$3" mode cert f="$RUN/raw/$3-$2-r$1.txt"
    case "$kind" in
        full-rsa) mode=notickets; cert=rsa ;;
        full-ec) mode=notickets; cert=ec ;;
        resumed) mode=tickets; cert=rsa ;;
    esac
    start_proxy "$t" "$mode" "$cert" "$kind-r$r"
    "${NICE[@]}" taskset -c 0 "$TLSLOAD" -p "${PORT[$t]}" -c 32 -d 1 >/dev/null 2>&1 || true # warm-up
    local c0 c1 b0 b1 line
    result "$r" "$t" "$kind" loadavg "$(cut -d' ' -f1 /proc/loadavg)"
    b0="$(cpu1_busy)"; c0="$(cpu_ticks "$PROXY_PID")"
    "${NICE[@]}" taskset -c 0 "$TLSLOAD" -p "${PORT[$t]}" -c 32 -d "$duration" >"$f" 2>&1 || true
    c1="$(cpu_ticks "$PROXY_PID")"; b1="$(cpu1_busy)"
    line="$(grep '^handshakes=' "$f" || true)"
    [ -n "$line" ] || { echo "bench: tlsload failed against $t:" >&2; cat "$f" >&2; exit 1; }
    local handshakes resumed offered renewed ok errors elapsed rate
    eval "$(echo "$line" | tr ' ' '\n' | grep -E '^(handshakes|resumed|offered|renewed|ok|errors|elapsed|rate)=')"
    [ "$handshakes" -gt 0 ] || { echo "bench: no handshake completed against $t" >&2; cat "$f" >&2; exit 1; }
    local cpu_us=$(( (c1 - c0) * 1000000 / HZ ))
    result "$r" "$t" "$kind" hs_per_s "$rate"
    result "$r" "$t" "$kind" handshakes "$handshakes"
    result "$r" "$t" "$kind" resumed "$resumed"
    result "$r" "$t" "$kind" offered "$offered"
    result "$r" "$t" "$kind" renewed "$renewed"
    result "$r" "$t" "$kind" errors "$errors"
    result "$r" "$t" "$kind" cpu1_other_pct "$(other_pct "$b0" "$b1" "$c0" "$c1" "$elapsed")"
    result "$r" "$t" "$kind" cpu_us_per_hs "$(awk -v c="$cpu_us" -v n="$handshakes" 'BEGIN {printf "%.1f", c/n}')"
    result "$r" "$t" "$kind" cpu_util "$(awk -v c="$cpu_us" -v e="$elapsed" 'BEGIN {printf "%.2f", c/1e6/e}')"
    echo "proxy_cpu_us=$cpu_us" >>"$f"
    # TLS 1.2 too (session ids and tickets): tlsload capped at TLS 1.2 offers every
    # session it got; with tickets and caches off nothing may resume. Once per run,
    # openssl s_client -reconnect reconnects 5 times with the first session (every
    # line must say "New"; s_client cannot check TLS 1.3 this way: it reconnects
    # before the ticket arrives).
    local l12
    l12="$("${NICE[@]}" taskset -c 0 "$TLSLOAD" -p "${PORT[$t]}" -c 4 -d 1 -t 1.2 2>&1 | tee -a "$f" | grep '^handshakes=' || true)"
    result "$r" "$t" "$kind" tls12_handshakes "$(echo "$l12" | tr ' ' '\n' | sed -n 's/^handshakes=//p')"
    result "$r" "$t" "$kind" tls12_resumed "$(echo "$l12" | tr ' ' '\n' | sed -n 's/^resumed=//p')"
    result "$r" "$t" "$kind" tls12_offered "$(echo "$l12" | tr ' ' '\n' | sed -n 's/^offered=//p')"
    if [ "$mode" = notickets ]; then
        if [ "$r" = 1 ]; then
            timeout 20 openssl s_client -connect "127.0.0.1:${PORT[$t]}" -servername localhost -tls1_2 \
                -reconnect </dev/null >"$RUN/raw/s_client-reconnect-$kind-$t.txt" 2>&1 || true
            result "$r" "$t" "$kind" s_client_reused "$(grep -c '^Reused,' "$RUN/raw/s_client-reconnect-$kind-$t.txt" || true)"
            result "$r" "$t" "$kind" s_client_new "$(grep -c '^New,' "$RUN/raw/s_client-reconnect-$kind-$t.txt" || true)"
        fi
    fi
    log "round $r $kind $t: $rate handshakes/s, $resumed/$handshakes resumed ($offered offered a session), $(awk -v c="$cpu_us" -v n="$handshakes" 'BEGIN {printf "%.0f", c/n}') us CPU/handshake, errors $errors"
    stop_proxy
}

test_idle() { # ROUND TARGET TEST(idle: after one request | idle-hs: after the handshake only)
    local r="$1" t="$2" k="$3" f="$RUN/raw/$3-$2-r$1.txt" noreq=()
    [ "$k" = idle-hs ] && noreq=(--no-request)
    start_proxy "$t" notickets rsa "$k-r$r"
    # Warm-up: some connections and requests, so lazily allocated state (OpenSSL
    # tables, upstream pools) is in the baseline and not counted per connection.
    "${NICE[@]}" taskset -c 0 "$TLSLOAD" -p "${PORT[$t]}" -c 8 -d 1 >/dev/null 2>&1 || true
    "${NICE[@]}" taskset -c 0 wrk -t1 -c16 -d1s "https://127.0.0.1:${PORT[$t]}/" >/dev/null 2>&1 || true
    sleep 1
    local before after hwm after_close
    before="$(rss_kib "$PROXY_PID" VmRSS)"
    : >"$f"
    "${NICE[@]}" taskset -c 0 "$PY" scripts/bench/idle_conns.py --port "${PORT[$t]}" -n "$idle_conns" --hold 300 "${noreq[@]}" >"$f" 2>&1 &
    local cpid=$!
    PIDS+=("$cpid")
    local i
    for i in $(seq 1200); do
        grep -q '^ready' "$f" && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^ready' "$f" || { echo "bench: idle client did not get ready against $t" >&2; cat "$f" >&2; exit 1; }
    sleep 2
    after="$(rss_kib "$PROXY_PID" VmRSS)"
    hwm="$(rss_kib "$PROXY_PID" VmHWM)"
    stop_pid "$cpid"
    sleep 1
    after_close="$(rss_kib "$PROXY_PID" VmRSS)"
    local opened
    opened="$(sed -n 's/^ready opened=\([0-9]*\).*/\1/p' "$f")"
    echo "rss_before_kib=$before rss_after_kib=$after vmhwm_kib=$hwm rss_after_close_kib=$after_close" >>"$f"
    [ "${opened:-0}" -gt 0 ] || { echo "bench: no idle connection opened against $t" >&2; cat "$f" >&2; exit 1; }
    result "$r" "$t" "$k" opened "$opened"
    result "$r" "$t" "$k" dropped "$(sed -n 's/^closing dropped_while_idle=\([0-9]*\).*/\1/p' "$f")"
    result "$r" "$t" "$k" rss_before_kib "$before"
    result "$r" "$t" "$k" rss_after_kib "$after"
    result "$r" "$t" "$k" rss_after_close_kib "$after_close"
    result "$r" "$t" "$k" kib_per_conn "$(awk -v a="$after" -v b="$before" -v n="$opened" 'BEGIN {printf "%.2f", (a-b)/n}')"
    log "round $r $k $t: $opened connections, VmRSS $before -> $after KiB ($(awk -v a="$after" -v b="$before" -v n="$opened" 'BEGIN {printf "%.2f", (a-b)/n}') KiB/conn), after close $after_close KiB"
    stop_proxy
}

profile_target() { # TARGET [TEST]: a wrk test's load, perf record + perf stat on the proxy
    local t="$1" k="${2:-keepalive}" d="$RUN/profile" win p
    local url="https://127.0.0.1:${PORT[$t]}${WRK_PATH[${2:-keepalive}]}"
    mkdir -p "$d"
    win=$(( duration > 4 ? duration - 2 : 2 ))
    start_proxy "$t" tickets rsa "profile-$k"
    p="$t"; [ "$k" = keepalive ] || p="$t-$k"  # file names: keepalive keeps the old ones
    "${NICE[@]}" taskset -c 0 wrk -t1 -c64 -d2s $(wrk_args "$k") "$url" >/dev/null 2>&1
    # 1: flat profile (self time per symbol), sampled on CPU time.
    "${NICE[@]}" taskset -c 0 wrk -t1 -c64 -d"$(( win + 2 ))s" $(wrk_args "$k") "$url" >"$d/$p-wrk-record.txt" 2>&1 &
    local w=$!
    PIDS+=("$w")
    sleep 1
    perf record -q -e cpu-clock -F 1999 -p "$PROXY_PID" -o "$d/$p.perf.data" -- sleep "$win" >/dev/null 2>&1 || true
    wait "$w" || true
    perf report -i "$d/$p.perf.data" --stdio --no-children --sort dso,symbol --percent-limit 0.7 \
        >"$d/$p-hotspots.txt" 2>/dev/null || true
    perf report -i "$d/$p.perf.data" --stdio --no-children --sort dso --percent-limit 0.5 \
        >"$d/$p-dso.txt" 2>/dev/null || true
    # User space only (the proxy's own code, libc, libevent), where it can act.
    local dsos
    dsos="$(perf report -i "$d/$p.perf.data" --stdio --no-children --sort dso 2>/dev/null |
        awk '$1 ~ /%$/ && $2 !~ /^\[/ && $2 !~ /^lib(crypto|ssl)/ {print $2}' | paste -sd, -)"
    [ -n "$dsos" ] && perf report -i "$d/$p.perf.data" --stdio --no-children --sort dso,symbol \
        --dsos "$dsos" --percent-limit 0.25 >"$d/$p-userspace.txt" 2>/dev/null || true
    # 2: syscalls per request: every syscall entry of the proxy over a window of
    # known length, divided by the requests wrk completed in a run of the same length.
    "${NICE[@]}" taskset -c 0 wrk -t1 -c64 -d"$(( win + 2 ))s" $(wrk_args "$k") "$url" >"$d/$p-wrk-stat.txt" 2>&1 &
    w=$!
    PIDS+=("$w")
    sleep 1
    perf stat -x, -e 'syscalls:sys_enter_*' -p "$PROXY_PID" -o "$d/$p-syscalls.csv" -- sleep "$win" >/dev/null 2>&1 || true
    wait "$w" || true
    local rps
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$d/$p-wrk-stat.txt")"
    awk -F, -v rps="${rps:-0}" -v win="$win" '$1 ~ /^[0-9]+$/ && $1 > 0 {
            n = $3; sub(/^syscalls:sys_enter_/, "", n); printf "%-16s %10d  %.2f per request\n", n, $1, (rps > 0 ? $1 / (rps * win) : 0) }' \
        "$d/$p-syscalls.csv" | sort -k2 -n -r >"$d/$p-syscalls.txt"
    echo "requests/s during the window: ${rps:-?}" >>"$d/$p-syscalls.txt"
    # 3: moat only: call graph (inclusive time per function), DWARF unwinding.
    if [ "$t" = moat ]; then
        "${NICE[@]}" taskset -c 0 wrk -t1 -c64 -d"$(( win + 2 ))s" $(wrk_args "$k") "$url" >/dev/null 2>&1 &
        w=$!
        PIDS+=("$w")
        sleep 1
        perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$PROXY_PID" -o "$d/$p-callgraph.perf.data" \
            -- sleep "$(( win < 4 ? win : 4 ))" >/dev/null 2>&1 || true
        wait "$w" || true
        perf report -i "$d/$p-callgraph.perf.data" --stdio --children --sort symbol --percent-limit 3 \
            -g none >"$d/$p-inclusive.txt" 2>/dev/null || true
    fi
    log "profiled $t ($k): $d/$p-hotspots.txt, $d/$p-syscalls.txt"
    stop_proxy
}

# ---------------------------------------------------------------- run
mkdir -p "$RUN/raw"
{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    [ "$has_moat" -eq 0 ] ||
        echo "moat: $("$MOAT" -V 2>&1 | head -1 || true) ($MOAT, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(git -C "$ROOT" status --porcelain -- src 2>/dev/null | wc -l) changed files in src/)"
    echo "haproxy: $(haproxy -v | head -1)"
    echo "nginx: $(nginx -v 2>&1)"
    echo "openssl: $(openssl version)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "h2load: $(h2load --version 2>&1 | head -1)"
    echo "rounds=$rounds duration=${duration}s idle_conns=$idle_conns targets=$targets nice=$nice_level"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); scheduler autogroup: $(cat /proc/$$/autogroup 2>/dev/null || echo none)"
} >"$RUN/env.txt"
cat "$RUN/env.txt" >&2

log "openssl speed on CPU 1 (signing ceiling)"
speed_s=3; [ "$quick" -eq 1 ] && speed_s=1
"${NICE[@]}" taskset -c 1 openssl speed -seconds "$speed_s" rsa2048 ecdsap256 ecdhx25519 >"$RUN/raw/openssl-speed.txt" 2>/dev/null
awk '/^rsa 2048 bits/ {print "rsa2048_sign_per_s\t" $6} /256 bits ecdsa \(nistp256\)/ {print "ecdsap256_sign_per_s\t" $7} /253 bits ecdh \(X25519\)/ {print "x25519_op_per_s\t" $6}' \
    "$RUN/raw/openssl-speed.txt" | while IFS=$'\t' read -r k v; do result 0 openssl speed "$k" "$v"; done

read -r -a tlist <<<"$targets"
n=${#tlist[@]}
for r in $(seq "$rounds"); do
    order=()
    for i in $(seq 0 $((n - 1))); do order+=("${tlist[$(( (i + r - 1) % n ))]}"); done
    log "round $r/$rounds, order: ${order[*]}"
    for k in keepalive body16k body256k upload1m; do
        want "$k" || continue
        for t in "${order[@]}"; do test_keepalive "$r" "$t" "$k"; done
    done
    if want h2; then for t in "${order[@]}"; do test_h2 "$r" "$t"; done; fi
    for kind in full-rsa full-ec resumed; do
        want "$kind" || continue
        for t in "${order[@]}"; do test_handshake "$r" "$t" "$kind"; done
    done
    if want idle; then for t in "${order[@]}"; do test_idle "$r" "$t" idle; done; fi
    if want idle-hs; then for t in "${order[@]}"; do test_idle "$r" "$t" idle-hs; done; fi
done

if [ "$profile" -eq 1 ]; then
    for t in "${tlist[@]}"; do
        if [ "$tests" = "$ALL_TESTS" ]; then profile_target "$t"; continue; fi
        for k in keepalive body16k body256k upload1m; do
            if want "$k"; then profile_target "$t" "$k"; fi
        done
    done
fi

cleanup
"$PY" scripts/bench/report.py "$RUN" | tee "$RUN/summary.md"
echo "raw output: $RUN" >&2
