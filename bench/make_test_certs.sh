#!/bin/bash
# Makes a throwaway CA and a server certificate for localhost / 127.0.0.1
# (valid 2 days) in DIR: ca.pem, ca.key, server.pem, server.key. For the
# soak smoke test and bench/security_bench.sh.
# Usage: make_test_certs.sh DIR
set -eu
cd "$1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=hopfield-test-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
echo "subjectAltName=DNS:localhost,IP:127.0.0.1" > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -days 2 -extfile san.ext -out server.pem 2>/dev/null
