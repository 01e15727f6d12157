#!/usr/bin/env bash
# Generates the demo TLS files for docker-compose.yml into docker/tls/ (once; --force to redo):
#   ca.crt ca.key          a throwaway CA (ferry gets it as --target-cacert)
#   server.crt server.key  the target's certificate: DNS:target (the compose service), localhost, 127.0.0.1
# Demo only: the keys are world-readable so the redis user inside the container can read them.
set -euo pipefail
out=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tls
if [ -s "$out/server.crt" ] && [ "${1:-}" != --force ]; then
  echo "certificates already in $out (use --force to regenerate)"
  exit 0
fi
command -v openssl >/dev/null || { echo "gen-certs.sh: openssl is required" >&2; exit 1; }
mkdir -p "$out"
cd "$out"
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 -keyout ca.key -out ca.crt \
  -subj '/CN=ferry-demo-ca' -addext 'basicConstraints=critical,CA:TRUE' \
  -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=target' 2>/dev/null
printf '%s\n' 'subjectAltName=DNS:target,DNS:localhost,IP:127.0.0.1' 'basicConstraints=CA:FALSE' \
  'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 \
  -extfile server.ext -out server.crt 2>/dev/null
rm -f server.csr server.ext ca.srl
chmod 644 ca.crt server.crt server.key
chmod 600 ca.key
echo "wrote $out/{ca.crt,ca.key,server.crt,server.key}"
