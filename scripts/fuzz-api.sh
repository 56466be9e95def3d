#!/usr/bin/env bash
# Fuzzes `fetchq serve` from its own OpenAPI document with schemathesis and
# fails on any server error (5xx), crash or response that breaks the schema.
#
#   scripts/fuzz-api.sh                 # about 3 minutes
#   FUZZ_MAX_EXAMPLES=200 scripts/fuzz-api.sh
#
# Starts its own PostgreSQL (fetchq dev-db, in $FUZZ_DIR) and server on a
# random loopback port, and stops both at the end. Needs python3 (venv, pip).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${FUZZ_DIR:-${TMPDIR:-/tmp}/fetchq-fuzz}
venv=${FUZZ_VENV:-$dir/venv}
examples=${FUZZ_MAX_EXAMPLES:-40}
token=fuzz-admin-secret
mkdir -p "$dir"

if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'schemathesis>=4,<5'
fi

cargo build -q -p fetchq-cli
fetchq=$PWD/target/debug/fetchq

server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    FETCHQ_PGDATA=$dir/pg "$fetchq" dev-db stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

admin_url=$(FETCHQ_PGDATA=$dir/pg "$fetchq" dev-db start | sed -n 's/^DATABASE_URL=//p')
psql -q "$admin_url" -c 'DROP DATABASE IF EXISTS fetchq_fuzz WITH (FORCE)' -c 'CREATE DATABASE fetchq_fuzz'
db_url=${admin_url%/*}/fetchq_fuzz

FETCHQ_TOKENS="admin=$token" RUST_LOG=${RUST_LOG:-warn} \
    "$fetchq" serve --database-url "$db_url" --migrate --bind 127.0.0.1:0 >"$dir/serve.out" 2>"$dir/serve.err" &
server_pid=$!
base=
for _ in $(seq 1 100); do
    base=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$dir/serve.out" | head -n1 || true)
    [ -n "$base" ] && curl -sf "$base/health" >/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$dir/serve.err" >&2; echo "fetchq serve exited" >&2; exit 1; }
    sleep 0.2
done
[ -n "$base" ] || { echo "fetchq serve did not start" >&2; exit 1; }
echo "fuzzing $base (server log: $dir/serve.err)"

# something to find: a queue with documents in several states
auth=(-H "Authorization: Bearer $token" -H 'Content-Type: application/json')
curl -sf "${auth[@]}" -d '{"name":"fuzz"}' "$base/api/v1/queues" >/dev/null
curl -sf "${auth[@]}" -d '{"mode":"push","docs":[{"subject":"a"},{"subject":"b","delay":"1h"},{"subject":"c","payload":{"x":1}}]}' \
    "$base/api/v1/queues/fuzz/docs" >/dev/null

status=0
"$venv/bin/schemathesis" run "$base/api/v1/openapi.json" \
    --url "$base" \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance,content_type_conformance \
    --max-examples "$examples" \
    --max-time "${FUZZ_MAX_TIME:-240}" \
    --generation-database none \
    --seed "${FUZZ_SEED:-$RANDOM}" \
    --no-color \
    --report junit --report-dir "$dir/report" || status=$?

if grep -qE 'panicked|(^| )ERROR ' "$dir/serve.err"; then
    echo "the server logged a panic or an error:" >&2
    grep -E 'panicked|(^| )ERROR ' "$dir/serve.err" | head -20 >&2
    status=1
fi
exit $status
