#!/usr/bin/env bash
# Resumable uploads, end to end with the real binaries: a 1 GiB file sent by `intake upload`
# in 10 MiB chunks to instance A, which is killed (-9) after 300 MiB; the same command then
# reaches instance B and is itself killed after 700 MiB; run a third time it completes on B.
# Checks the SHA-256 and that nothing is left over (rows, reservations, intents, files).
#
#   scripts/resume-demo.sh            on disk
#   KIND=s3 scripts/resume-demo.sh    in an S3 bucket (s3s-fs, installed when missing)
#
# Needs the `intake` role on the local Postgres (see README → Run it from source).
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${KIND:-fs}
ROLE_URL=${DEMO_DATABASE:-postgres://intake:intake@127.0.0.1:5432}
DB=$ROLE_URL/intake_resume_demo
WORK=$(mktemp -d "$PWD/target/resume-demo.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$ROLE_URL/intake" -q -c "DROP DATABASE IF EXISTS intake_resume_demo WITH (FORCE)"
  rm -rf "$WORK"
}
trap cleanup EXIT
sql() { psql "$DB" -Atc "$1"; }

cargo build --release --locked -p intake
BIN=target/release/intake
psql "$ROLE_URL/intake" -q -c "DROP DATABASE IF EXISTS intake_resume_demo WITH (FORCE)" -c "CREATE DATABASE intake_resume_demo"
STORAGE=()
if [ "$KIND" = s3 ]; then
  command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --locked --features binary
  mkdir -p "$WORK/s3/demo"
  s3s-fs --host 127.0.0.1 --port 18093 --access-key demo --secret-key demo-secret "$WORK/s3" &
  PIDS+=($!)
  STORAGE=(APP__STORAGE__KIND=s3 APP__STORAGE__S3__BUCKET=demo APP__STORAGE__S3__ENDPOINT=http://127.0.0.1:18093
    APP__STORAGE__S3__ACCESS_KEY_ID=demo APP__STORAGE__S3__SECRET_ACCESS_KEY=demo-secret APP__STORAGE__S3__PATH_STYLE=true)
fi
instance() { # PORT
  env APP_ENVIRONMENT=local APP__DATABASE__URL="$DB" APP__STORAGE__ROOT="$WORK/storage" \
    APP__SERVER__PORT="$1" APP__LOG__LEVEL=warn "${STORAGE[@]}" "$BIN" &
  PIDS+=($!)
  until curl -fs -o /dev/null "http://127.0.0.1:$1/health/ready"; do sleep 0.2; done
}
instance 18091; A=$!
instance 18092

head -c 1073741824 /dev/urandom > "$WORK/file.bin"
want=$(sha256sum "$WORK/file.bin" | cut -d' ' -f1)
upload() { # PORT: exec'd, so that a signal to the background job reaches the client itself
  exec "$BIN" upload "$WORK/file.bin" --url "http://127.0.0.1:$1" --state "$WORK/state.json" \
    --chunk-size 10485760 --retries 2 --json
}
recorded() { sql "SELECT coalesce(max(received), 0) FROM resumable_uploads"; }
wait_for_bytes() { until [ "$(recorded)" -ge "$1" ]; do sleep 0.2; done; }

echo "== to instance A, killed (-9) once 300 MiB are recorded"
upload 18091 > /dev/null 2> "$WORK/first.log" & client=$!
wait_for_bytes $((300 << 20)); kill -9 "$A"
if wait "$client"; then echo "the client should have failed"; exit 1; fi
tail -1 "$WORK/first.log"
echo "== the same command through instance B, the client killed once 700 MiB are recorded"
upload 18092 > /dev/null 2> "$WORK/second.log" & client=$!
wait_for_bytes $((700 << 20)); kill -TERM "$client"; wait "$client" || true
grep resuming "$WORK/second.log"
echo "== once more, to the end"
(upload 18092) > "$WORK/stored.json" 2> "$WORK/third.log"
grep resuming "$WORK/third.log"
got=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[0]['sha256'])" "$WORK/stored.json")
echo "SHA-256 of the file: $want"
echo "SHA-256 stored:      $got"
left="rows $(sql 'SELECT count(*) FROM resumable_uploads'), reservations $(sql 'SELECT count(*) FROM quota_reservations'), intents $(sql 'SELECT count(*) FROM storage_intents'), upload files $(find "$WORK/storage/uploads" -type f 2>/dev/null | wc -l), files $(sql 'SELECT count(*) FROM files')"
echo "left: $left"
[ "$want" = "$got" ] && [ "$left" = "rows 0, reservations 0, intents 0, upload files 0, files 1" ]
echo "== resumed across a killed instance and a killed client: OK"
