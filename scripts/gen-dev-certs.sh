#!/usr/bin/env bash
# Generates development certificates for moat (never for production).
#
#   scripts/gen-dev-certs.sh [--force] [DIR]        (DIR defaults to certs/dev)
#
# Writes into DIR:
#   ca.crt, ca.key            a throw-away development CA (RSA-2048)
#   server.crt, server.key    RSA-2048 leaf for localhost, *.localhost, 127.0.0.1, ::1
#   server-ec.crt, server-ec.key  ECDSA P-256 leaf for the same names
#   signing.key               32 random bytes as 64 hex characters (header signing)
# Leaves are signed by the CA and hold only the leaf (the CA is the trust anchor:
# clients use --cacert DIR/ca.crt). Idempotent: does nothing when every file is
# present, unless --force. Private keys are mode 600.
set -euo pipefail

force=0
dir=""
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) echo "gen-dev-certs: unknown option $arg" >&2; exit 2 ;;
        *) dir="$arg" ;;
    esac
done
if [ -z "$dir" ]; then
    dir="$(cd "$(dirname "$0")/.." && pwd)/certs/dev"
fi

files="ca.crt ca.key server.crt server.key server-ec.crt server-ec.key signing.key"
if [ "$force" -eq 0 ]; then
    missing=0
    for f in $files; do [ -s "$dir/$f" ] || missing=1; done
    if [ "$missing" -eq 0 ]; then
        echo "gen-dev-certs: $dir already has every file (use --force to regenerate)"
        exit 0
    fi
fi

command -v openssl >/dev/null || { echo "gen-dev-certs: openssl not found" >&2; exit 1; }
mkdir -p "$dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umask 077

names="DNS:localhost,DNS:*.localhost,IP:127.0.0.1,IP:::1"
cat > "$work/ca.ext" <<EXT
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EXT
cat > "$work/leaf.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $names
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EXT

serial() { echo "0x$(openssl rand -hex 16)"; }

# CA
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/ca.key" 2>/dev/null
openssl req -new -key "$work/ca.key" -subj "/O=moat development/CN=moat dev CA" \
    -out "$work/ca.csr"
openssl x509 -req -in "$work/ca.csr" -signkey "$work/ca.key" -days 3650 -sha256 \
    -set_serial "$(serial)" -extfile "$work/ca.ext" -out "$work/ca.crt" 2>/dev/null

# leaf KEYFILE CERTFILE: signs a server certificate for $names with the CA
leaf() {
    openssl req -new -key "$work/$1" -subj "/O=moat development/CN=localhost" \
        -out "$work/$1.csr"
    openssl x509 -req -in "$work/$1.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
        -days 825 -sha256 -set_serial "$(serial)" -extfile "$work/leaf.ext" \
        -out "$work/$2" 2>/dev/null
}
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/server.key" 2>/dev/null
leaf server.key server.crt
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve \
    -out "$work/server-ec.key"
leaf server-ec.key server-ec.crt

# 32 random bytes, hex, no newline: the HMAC key for X-Moat-Signature
printf '%s' "$(openssl rand -hex 32)" > "$work/signing.key"

openssl verify -CAfile "$work/ca.crt" "$work/server.crt" "$work/server-ec.crt" >/dev/null

for f in $files; do
    install -m 600 "$work/$f" "$dir/$f"
done
chmod 644 "$dir/ca.crt" "$dir/server.crt" "$dir/server-ec.crt"
echo "gen-dev-certs: wrote $files to $dir"
echo "gen-dev-certs: trust it with: curl --cacert $dir/ca.crt https://localhost:8443/"
