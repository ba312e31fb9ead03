#!/usr/bin/env bash
# Soak: many idle TLS connections plus a steady request load against a moat of its own.
#
#   scripts/soak.sh [--conns N] [--duration S] [--load-conns N] [--delay-ms MS]
#                   [--workers N] [--keep DIR]
#
#   --conns N       idle TLS connections held during the load (default 10000); each
#                   sent one keep-alive GET first, as a browser tab would
#   --duration S    seconds of request load while they are held (default 60)
#   --load-conns N  keep-alive HTTPS connections of the load (wrk -c, default 8)
#   --delay-ms MS   pause of each load connection between two requests (default 10):
#                   a steady rate, not a saturating one
#   --workers N     moat workers (default 2)
#   --keep DIR      keep the config and every log there (default: a temp dir, removed)
#
# It starts everything itself on free 127.0.0.1 ports: a moat (build/moat, or MOAT_BIN)
# with its own config in a temp dir (dev certificates, idle_timeout above the soak's
# length), the demo application as upstream, scripts/bench/idle_conns.py holding the
# idle connections and wrk for the load; all are stopped by PID on exit, also on
# failure or Ctrl-C. It raises its own `ulimit -n` to what the connections need.
#
# Reported: moat's RSS at baseline, with the idle connections and at the end, RSS per
# idle connection ((with - baseline) / N), file descriptors (/proc/PID/fd) at each step,
# the request rate and latency, and every error: idle connections that failed or were
# dropped, wrk socket errors and non-2xx answers, a moat that died.
# Exit status: 0 no error; 1 some error; 2 could not run (missing tool, moat did not
# start, ulimit too low); 64 usage.
#
# Needs: wrk (scripts/install-deps.sh --bench), /usr/bin/python3, build/moat.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
repo="$(pwd)"

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }

conns=10000
duration=60
load_conns=8
delay_ms=10
workers=2
keep=""
while [ $# -gt 0 ]; do
    case "$1" in
        --conns) conns="${2:-}"; shift 2 || { usage >&2; exit 64; } ;;
        --duration) duration="${2:-}"; shift 2 || { usage >&2; exit 64; } ;;
        --load-conns) load_conns="${2:-}"; shift 2 || { usage >&2; exit 64; } ;;
        --delay-ms) delay_ms="${2:-}"; shift 2 || { usage >&2; exit 64; } ;;
        --workers) workers="${2:-}"; shift 2 || { usage >&2; exit 64; } ;;
        --keep) keep="${2:-}"; shift 2 || { usage >&2; exit 64; } ;;
        -h|--help) usage; exit 0 ;;
        *) echo "soak.sh: unknown argument $1" >&2; usage >&2; exit 64 ;;
    esac
done
for v in "$conns" "$duration" "$load_conns" "$delay_ms" "$workers"; do
    case "$v" in ''|*[!0-9]*) echo "soak.sh: numeric options take integers" >&2; exit 64 ;; esac
done
[ "$conns" -ge 1 ] && [ "$duration" -ge 1 ] && [ "$load_conns" -ge 1 ] && [ "$workers" -ge 1 ] ||
    { echo "soak.sh: values must be >= 1" >&2; exit 64; }

py=/usr/bin/python3
[ -x "$py" ] || py="$(command -v python3)"
moat_bin="${MOAT_BIN:-build/moat}"
[ -x "$moat_bin" ] || { echo "soak.sh: $moat_bin not found (build it, or set MOAT_BIN)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "soak.sh: wrk not found (scripts/install-deps.sh --bench)" >&2; exit 2; }

# Each idle connection is a descriptor in moat and one in the client: both inherit this.
need=$(( conns + 4096 ))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
        ulimit -Hn "$need" 2>/dev/null ||
            { echo "soak.sh: hard limit of open files $(ulimit -Hn) < $need and cannot be raised" >&2; exit 2; }
    fi
    ulimit -n "$need" || { echo "soak.sh: cannot raise ulimit -n to $need" >&2; exit 2; }
fi

work="${keep:-$(mktemp -d "${TMPDIR:-/tmp}/moat-soak.XXXXXX")}"
mkdir -p "$work"
moat_pid="" up_pid="" idle_pid="" wrk_pid=""
stop_pid() { # PID: SIGTERM, up to 15 s, then SIGKILL
    local pid="$1"
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}
cleanup() {
    stop_pid "$wrk_pid"; stop_pid "$idle_pid"; stop_pid "$moat_pid"; stop_pid "$up_pid"
    wrk_pid="" idle_pid="" moat_pid="" up_pid=""
    [ -n "$keep" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$moat_pid/status"; }
fds() { ls "/proc/$moat_pid/fd" | wc -l; }

scripts/gen-dev-certs.sh >/dev/null || { echo "soak.sh: gen-dev-certs failed" >&2; exit 2; }
https="$(free_port)"; http="$(free_port)"; admin="$(free_port)"; up="$(free_port)"
hold_s=$(( duration + 900 ))   # the idle connections outlive the load; moat must not drop them
cat > "$work/moat.yaml" <<EOF
workers: $workers
listen:
  https: ["127.0.0.1:$https"]
  http: ["127.0.0.1:$http"]
  admin: "127.0.0.1:$admin"
  redirect_https_port: $https
tls:
  certificates:
    - cert: "$repo/certs/dev/server.crt"
      key: "$repo/certs/dev/server.key"
upstreams:
  app:
    servers: ["127.0.0.1:$up"]
routes:
  - match: {path_prefix: "/"}
    auth: none
    upstream: app
limits:
  idle_timeout: 1h
  drain_timeout: 5s
log:
  access: "$work/access.log"
  audit: "$work/audit.log"
EOF
"$moat_bin" -t -c "$work/moat.yaml" > "$work/check.txt" 2>&1 ||
    { echo "soak.sh: the soak config is invalid:" >&2; cat "$work/check.txt" >&2; exit 2; }
"$py" scripts/demo-upstream.py --port "$up" --host 127.0.0.1 > "$work/upstream.log" 2>&1 < /dev/null &
up_pid=$!
"$moat_bin" -c "$work/moat.yaml" > "$work/moat.stdout" 2> "$work/moat.stderr" < /dev/null &
moat_pid=$!
for _ in $(seq 100); do
    listening "$https" && listening "$up" && break
    kill -0 "$moat_pid" 2>/dev/null || break
    sleep 0.1
done
if ! kill -0 "$moat_pid" 2>/dev/null || ! listening "$https" || ! listening "$up"; then
    echo "soak.sh: moat or the upstream did not start:" >&2
    cat "$work/moat.stderr" "$work/upstream.log" >&2
    exit 2
fi
url="https://127.0.0.1:$https/"
# warm up (every worker, the upstream pool) so the baseline is moat's steady state
wrk -t1 -c"$workers" -d2s "$url" > "$work/warmup.txt" 2>&1
sleep 1
rss0=$(rss_kib); fd0=$(fds)
echo "soak.sh: moat pid $moat_pid on 127.0.0.1:$https, $workers workers; baseline RSS $rss0 KiB, $fd0 fds"

t0=$(date +%s)
"$py" scripts/bench/idle_conns.py --port "$https" -n "$conns" --parallel 100 --hold "$hold_s" \
    > "$work/idle.txt" 2> "$work/idle.err" < /dev/null &
idle_pid=$!
while ! grep -q '^ready' "$work/idle.txt" 2>/dev/null; do
    kill -0 "$idle_pid" 2>/dev/null || break
    kill -0 "$moat_pid" 2>/dev/null || break
    [ $(( $(date +%s) - t0 )) -lt 900 ] || break
    sleep 1
done
if ! grep -q '^ready' "$work/idle.txt"; then
    echo "soak.sh: the idle connections were not all opened within 900 s:" >&2
    cat "$work/idle.txt" "$work/idle.err" >&2
    exit 1
fi
opened=$(sed -n 's/^ready opened=\([0-9]*\) failed=\([0-9]*\).*/\1/p' "$work/idle.txt")
failed=$(sed -n 's/^ready opened=\([0-9]*\) failed=\([0-9]*\).*/\2/p' "$work/idle.txt")
sleep 2
rss1=$(rss_kib); fd1=$(fds)
echo "soak.sh: $opened idle connections open ($failed failed) after $(( $(date +%s) - t0 )) s;" \
     "RSS $rss1 KiB, $fd1 fds"

# the load, at a steady pace: each connection waits delay_ms between two requests
cat > "$work/pace.lua" <<EOF
function delay() return $delay_ms end
EOF
rss_peak=$rss1
wrk -t1 -c"$load_conns" -d"${duration}s" --timeout 10s --latency -s "$work/pace.lua" "$url" \
    > "$work/wrk.txt" 2>&1 &
wrk_pid=$!
while kill -0 "$wrk_pid" 2>/dev/null; do
    kill -0 "$moat_pid" 2>/dev/null || break
    r=$(rss_kib 2>/dev/null || echo 0)
    [ "${r:-0}" -gt "$rss_peak" ] && rss_peak=$r
    sleep 1
done
wait "$wrk_pid"; wrk_pid=""
alive=1
kill -0 "$moat_pid" 2>/dev/null || alive=0
rss2=0; fd2=0
[ "$alive" -eq 1 ] && { rss2=$(rss_kib); fd2=$(fds); }

# the idle client reports how many moat closed while they were idle
kill -TERM "$idle_pid" 2>/dev/null
for _ in $(seq 100); do grep -q '^closing' "$work/idle.txt" && break; sleep 0.1; done
stop_pid "$idle_pid"; idle_pid=""
dropped=$(sed -n 's/^closing dropped_while_idle=\([0-9]*\).*/\1/p' "$work/idle.txt")
sleep 2
fd3=0
[ "$alive" -eq 1 ] && kill -0 "$moat_pid" 2>/dev/null && fd3=$(fds)

reqs=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
rate=$(awk '/^Requests\/sec:/ { print $2 }' "$work/wrk.txt")
p50=$(awk '$1 == "50%" { print $2 }' "$work/wrk.txt")
p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk.txt")
sock_err=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$work/wrk.txt")
non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $5 }' "$work/wrk.txt")
per_conn=$("$py" -c "print('%.1f' % (($rss1 - $rss0) / max(1, $opened)))")

errors=$(( ${failed:-0} + ${dropped:-1} + ${sock_err:-0} + ${non2xx:-0} + (1 - alive) ))
[ "$opened" = "$conns" ] || errors=$(( errors + conns - ${opened:-0} ))
[ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { echo "soak.sh: wrk sent no request:" >&2; cat "$work/wrk.txt" >&2; errors=$(( errors + 1 )); }
cat <<EOF

soak: $conns idle TLS connections + $load_conns load connections (${delay_ms} ms pause) for ${duration} s, $workers workers
  idle connections   opened $opened, failed ${failed:-?}, dropped while idle ${dropped:-?}
  moat RSS           baseline $rss0 KiB, with idle $rss1 KiB, peak $rss_peak KiB, end $rss2 KiB
  RSS per idle conn  $per_conn KiB
  moat fds           baseline $fd0, with idle $fd1, end $fd2, after the idle closed $fd3
  load               ${reqs:-0} requests, ${rate:-0} req/s, p50 ${p50:-?}, p99 ${p99:-?}
  load errors        socket ${sock_err:-0}, non-2xx ${non2xx:-0}
  moat alive         $([ "$alive" -eq 1 ] && echo yes || echo NO)
  errors             $errors
EOF
if [ "${non2xx:-0}" -gt 0 ]; then  # which answers, from moat's access log
    echo "soak.sh: non-2xx answers (status count, then up to 5 of them):"
    grep -v '"status": *2[0-9][0-9]' "$work/access.log" | grep -o '"status": *[0-9]*' | sort | uniq -c
    grep -v '"status": *2[0-9][0-9]' "$work/access.log" | head -5
fi
if [ "$alive" -eq 0 ]; then
    echo "soak.sh: moat died:" >&2
    tail -20 "$work/moat.stderr" >&2
fi
[ "$errors" -eq 0 ] && { echo "soak: PASS"; exit 0; }
echo "soak: FAIL"
exit 1
