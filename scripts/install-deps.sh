#!/usr/bin/env bash
# Installs the Debian 12 packages moat needs; skips everything already installed.
#
#   scripts/install-deps.sh [--test] [--bench] [--fuzz]
#
#   (always)  build + run: compiler, meson, ninja, libevent, OpenSSL, hiredis, libyaml, nghttp2,
#             libsystemd (sd_notify), cmocka, redis, python3 + pytest, curl, openssl
#   --test    testssl.sh, sslscan (TLS scanners) and the tools they call, clang-format,
#             python3-h2 and nghttp2-client (nghttp, h2load) for the HTTP/2 tests,
#             prometheus (promtool checks /metrics and the alert rules), mmdebstrap (the
#             container image's root file system), systemd (systemd-analyze verify) and
#             rsyslog + rsyslog-openssl (the syslog receiver of test_syslog.py), strace
#             (test_perf_syscalls.py counts the syscalls a large body costs)
#   --bench   haproxy, nginx-light, wrk, h2load (nghttp2-client), taskset (util-linux)
#   --fuzz    clang, its libFuzzer runtime, llvm-symbolizer (readable crash stacks)
#
# Idempotent: asks dpkg which packages are missing and runs apt-get update and
# apt-get install only when something is. Works as root or through sudo, with no
# terminal (DEBIAN_FRONTEND=noninteractive).
set -euo pipefail

pkgs=(build-essential meson ninja-build pkg-config libevent-dev libssl-dev libhiredis-dev
      libyaml-dev libnghttp2-dev libsystemd-dev libcmocka-dev redis-server redis-tools python3
      python3-pytest curl openssl ca-certificates)
for arg in "$@"; do
    case "$arg" in
        --test) pkgs+=(testssl.sh sslscan bsdmainutils procps clang-format python3-h2
                       nghttp2-client prometheus mmdebstrap systemd rsyslog rsyslog-openssl strace) ;;
        --bench) pkgs+=(haproxy nginx-light wrk nghttp2-client util-linux) ;;
        --fuzz) pkgs+=(clang libclang-rt-14-dev llvm-14) ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "install-deps: unknown option $arg (want --test, --bench, --fuzz)" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${pkgs[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
    [ "$status" = "installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#pkgs[@]} packages present"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: not root and no sudo" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
# A mirror hiccup should not fail the whole run: retry the network steps.
for try in 1 2 3; do
    $sudo apt-get update -qq && break
    [ "$try" -eq 3 ] && exit 1
    sleep 5
done
for try in 1 2 3; do
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" && break
    [ "$try" -eq 3 ] && exit 1
    sleep 5
done
echo "install-deps: done"
