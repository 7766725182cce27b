#!/usr/bin/env bash
# intake's benchmark, end to end: builds intake and the bare ceiling server in release mode and
# runs the same cases on 127.0.0.1, in rounds, the servers one after another within each round
# (interleaved: the machine's drift falls on all of them alike), against
#   intake (local disk, and S3: s3s-fs, installed from crates.io when missing),
#   the bare ceiling (bench/src/bin/bare-ceiling.rs: actix-web /ping, a raw-body sink that
#     hashes and fdatasyncs),
#   rustypaste (crates.io), the durable FastAPI peer (bench/peer/durable.py: fsync + a Postgres
#     row) and the tutorial's in-memory FastAPI peer (bench/peer/app.py: stores nothing),
#   @tus/server with its file store (npm) for the resumable case,
#   the S3 server alone: the S3 cases' objects PUT straight to it by object_store,
# then soaks intake alone, measures the machine's ceilings (disk, SHA-256, loopback, the S3
# server's PUTs by boto3) and writes docs/benchmarks.md and
# docs/benchmarks.svg: each figure the median over rounds, each comparison the median of the
# per-round ratios with their spread.
#
#   scripts/bench.sh            the full run: 5 rounds (ROUNDS=N for another count), a 10-minute
#                               soak; a few GB of disk at a time
#   QUICK=1 scripts/bench.sh    one small round per case, judged only on every case completing
#                               with every upload verified (.ci/run runs it)
#
# Every load goes to 127.0.0.1 only and is bounded in count (see bench/src/cases.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${BENCH_PORT:-18080}
PEER_PORT=${BENCH_PEER_PORT:-18081}
S3_PORT=${BENCH_S3_PORT:-18082}
S3_URL=http://bench:bench-secret@127.0.0.1:$S3_PORT/bench
ROLE_URL=${BENCH_DATABASE:-postgres://intake:intake@127.0.0.1:5432}
# Without TLS, as in docker compose (whose Postgres has none): a local Debian Postgres offers it,
# and encrypting every query over loopback cost about 8% of the small-upload rate.
DB_URL=$ROLE_URL/intake_bench?sslmode=disable
QUICK_FLAG=${QUICK:+--quick}
DOCS=docs
[ -n "${QUICK:-}" ] && DOCS=target/bench-quick && mkdir -p "$DOCS"

mkdir -p target
WORK=$(mktemp -d "$PWD/target/bench.XXXXXX")
RESULTS=$WORK/results.jsonl
SERVER_PID=
S3_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$S3_PID" ]; then kill "$S3_PID" 2>/dev/null || true; wait "$S3_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free() { # PORT: nothing may answer there yet, or the run would measure whatever it is
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/")" != 000 ]; then
    echo "bench: something already listens on 127.0.0.1:$1; stop it or set BENCH_*PORT" >&2
    exit 1
  fi
}

wait_for() { # URL: wait up to 60 s for any HTTP answer (a 404 will do: the server listens)
  for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" != 000 ] && return 0
    sleep 0.1
  done
  echo "bench: $1 did not come up" >&2
  return 1
}

stop_server() { # a server that is gone before it is told to stop has crashed: the run fails
  if ! kill -TERM "$SERVER_PID"; then
    echo "bench: the server under test (pid $SERVER_PID) exited during the run" >&2
    exit 1
  fi
  wait "$SERVER_PID" || true
  SERVER_PID=
}

ROUND=1
suite() { # PORT TARGET DURABILITY [suite options…]: a case against the server on PORT
  local port=$1 target=$2 durability=$3
  shift 3
  "$BENCH" suite --address "127.0.0.1:$port" --pid "$SERVER_PID" --target "$target" \
    --durability "$durability" --out "$RESULTS" --round "$ROUND" $QUICK_FLAG "$@"
}
tus() { # PORT TARGET DURABILITY
  "$BENCH" tus --address "127.0.0.1:$1" --pid "$SERVER_PID" --target "$2" --durability "$3" \
    --out "$RESULTS" --round "$ROUND" $QUICK_FLAG
}

echo "== building (release)"
cargo build --release --locked -p intake -p intake-bench
BENCH=$PWD/target/release/intake-bench

echo "== the peers, installed when missing"
venv=target/bench-venv
if ! "$venv/bin/python" -c "import fastapi, uvicorn, python_multipart, asyncpg, boto3" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet fastapi 'uvicorn[standard]' python-multipart asyncpg boto3
fi
command -v rustypaste >/dev/null || cargo install --locked rustypaste@0.18.1
node_peers=target/bench-node
if ! grep -qs '"version": "1.10.2"' "$node_peers/node_modules/@tus/server/package.json"; then
  # 1.x: 2.x serves through Node's web streams, whose Node 20 build crashed the server now and
  # then at the end of a request ("ReadableStream is already closed").
  npm install --prefix "$node_peers" --no-audit --no-fund --silent @tus/server@1.10.2 @tus/file-store@1.5.1
fi
# An ES module finds its packages beside it, not by NODE_PATH.
cp bench/peer/tus-server.mjs "$node_peers/"
command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --locked --features binary

# Every server is started afresh for each case of each round, and its files are deleted when it
# stops: the same state every round, and the disk holds one server's files at a time. For a
# minute or more after a large delete, ext4 skips the freed inodes when it creates files
# (`recently_deleted`; about a fifth of intake's CPU in one profile): that cost falls on the
# next server, a different one each round, as the order turns.
INTAKE_STORES="a file of up to 64 KiB: written with its row in one Postgres commit; larger: fsync of file and directory, then a Postgres commit of its row"
S3_STORES="object completed in the S3 server, then a Postgres commit of its row (up to 64 KiB: with its row, as on disk)"
BARE_STORES="raw body hashed, written, fdatasync (no directory sync, no database)"
RUSTYPASTE="rustypaste $(cargo install --list | awk '/^rustypaste /{print $2}' | tr -d 'v:')"
DURABLE_STORES="streamed to a file, fsync of file and directory, then a Postgres row (asyncpg)"
TUS_PEER="@tus/server 1.10.2"
STORAGE=

start_intake() { # extra VAR=value settings
  free "$PORT"
  STORAGE=$(mktemp -d "$WORK/storage.XXXXXX")
  psql "$ROLE_URL/intake" -q -c "DROP DATABASE IF EXISTS intake_bench WITH (FORCE)" -c "CREATE DATABASE intake_bench"
  env APP__SERVER__PORT=$PORT APP__DATABASE__URL=$DB_URL APP__STORAGE__ROOT=$STORAGE \
    APP__LOG__LEVEL=warn APP__UPLOAD__MAX_IN_FLIGHT_PER_USER=0 APP_ENVIRONMENT=local "$@" target/release/intake &
  SERVER_PID=$!
  wait_for "http://127.0.0.1:$PORT/health/ready"
}
start_intake_s3() {
  rm -rf "$WORK/s3/bench" && mkdir -p "$WORK/s3/bench"
  start_intake APP__STORAGE__KIND=s3 APP__STORAGE__S3__BUCKET=bench \
    APP__STORAGE__S3__ENDPOINT="http://127.0.0.1:$S3_PORT" APP__STORAGE__S3__ACCESS_KEY_ID=bench \
    APP__STORAGE__S3__SECRET_ACCESS_KEY=bench-secret APP__STORAGE__S3__PATH_STYLE=true
}
start_bare() {
  free "$PEER_PORT"
  STORAGE=$WORK/bare
  target/release/bare-ceiling "127.0.0.1:$PEER_PORT" "$STORAGE" &
  SERVER_PID=$!
  wait_for "http://127.0.0.1:$PEER_PORT/ping"
}
start_rustypaste() {
  STORAGE=$WORK/rustypaste
  cat > "$WORK/rustypaste.toml" <<TOML
[server]
address = "127.0.0.1:$PEER_PORT"
max_content_length = "2GB"
upload_path = "$STORAGE"
timeout = "300s"

[paste]
random_url = { type = "alphanumeric", length = 16 }
default_extension = "txt"
mime_override = []
mime_blacklist = []
# The benchmark sends the same bytes every time; each upload must be stored, not matched.
duplicate_files = true
TOML
  free "$PEER_PORT"
  RUST_LOG=warn CONFIG=$WORK/rustypaste.toml rustypaste &
  SERVER_PID=$!
  wait_for "http://127.0.0.1:$PEER_PORT/"
}
start_fastapi() { # MODULE
  free "$PEER_PORT"
  STORAGE=$WORK/peer
  if [ "$1" = durable ]; then
    psql "$ROLE_URL/intake" -q -c "DROP DATABASE IF EXISTS peer_bench WITH (FORCE)" -c "CREATE DATABASE peer_bench"
    psql "$ROLE_URL/peer_bench" -q -c "CREATE TABLE peer_files (id uuid PRIMARY KEY, size bigint NOT NULL, sha256 text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
  fi
  (cd bench/peer && exec env PEER_STORAGE="$STORAGE" PEER_DATABASE="$ROLE_URL/peer_bench?sslmode=disable" \
    "../../$venv/bin/uvicorn" "$1:app" --host 127.0.0.1 --port "$PEER_PORT" \
    --workers 2 --log-level warning --no-access-log) &
  SERVER_PID=$!
  wait_for "http://127.0.0.1:$PEER_PORT/ping"
}
start_tus_peer() {
  free "$PEER_PORT"
  STORAGE=$WORK/tus-peer
  node "$node_peers/tus-server.mjs" "$PEER_PORT" "$STORAGE" &
  SERVER_PID=$!
  wait_for "http://127.0.0.1:$PEER_PORT/tus/"
}
stop() { # the server that measured, and its files
  stop_server
  rm -rf "$STORAGE" "$WORK/s3/bench"
}

# SERVER CASE: whether the server takes the case, and if so measures it in round $ROUND.
measure() {
  local server=$1 case=$2
  case "$server:$case" in
    intake:tus*) start_intake; tus "$PORT" intake "$INTAKE_STORES" ;;
    intake:*) start_intake; suite "$PORT" intake "$INTAKE_STORES" --case "$case" ;;
    s3:tus*) start_intake_s3; tus "$PORT" "intake (S3)" "$S3_STORES" ;;
    "s3:upload 1 MiB c=16" | "s3:upload 1 GiB c=1")
      start_intake_s3; suite "$PORT" "intake (S3)" "$S3_STORES" --case "$case" ;;
    bare:upload* | bare:ping*)
      start_bare; suite "$PEER_PORT" "bare actix-web (ceiling)" "$BARE_STORES" --api raw --case "$case" ;;
    rustypaste:upload*)
      start_rustypaste
      suite "$PEER_PORT" "$RUSTYPASTE" "whole file in memory, then written (no fsync, no database)" \
        --api url --stored-in "$STORAGE" --case "$case" ;;
    durable:tus* | memory:tus*) return 0 ;;
    durable:*) start_fastapi durable; suite "$PEER_PORT" "FastAPI, durable" "$DURABLE_STORES" --case "$case" ;;
    memory:*) start_fastapi app
      suite "$PEER_PORT" "FastAPI, in memory" "nothing stored: read whole into memory and dropped" --case "$case" ;;
    "s3-alone:upload 1 MiB c=16" | "s3-alone:upload 1 GiB c=1")
      rm -rf "$WORK/s3/bench" && mkdir -p "$WORK/s3/bench"
      "$BENCH" s3-put --s3 "$S3_URL" --pid "$S3_PID" --case "$case" --out "$RESULTS" \
        --round "$ROUND" $QUICK_FLAG
      rm -rf "$WORK/s3/bench"
      return 0 ;;
    tus-peer:tus*) start_tus_peer
      tus "$PEER_PORT" "$TUS_PEER" "each PATCH written to the file (no fsync; state in a JSON file, no database)" ;;
    *) return 0 ;;
  esac
  stop
}

mkdir -p "$WORK/s3"
free "$S3_PORT"
s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key bench --secret-key bench-secret "$WORK/s3" &
S3_PID=$!
wait_for "http://127.0.0.1:$S3_PORT/"

# Interleaved: every case in rounds, each round the servers one after another, starting one
# further along each round, so that the machine's drift (page cache, writeback, ext4's freed
# inodes after a delete) falls on every server alike. The report takes medians over rounds.
ROUNDS=${ROUNDS:-5}
[ -n "${QUICK:-}" ] && ROUNDS=1
SERVERS=(intake bare durable rustypaste memory s3 s3-alone tus-peer)
mapfile -t CASES < <("$BENCH" cases)
CASES+=("tus 1 GiB in 10 MiB chunks c=1")
for case in "${CASES[@]}"; do
  echo "== $case: $ROUNDS rounds"
  for ROUND in $(seq 1 "$ROUNDS"); do
    for i in "${!SERVERS[@]}"; do
      measure "${SERVERS[$(( (i + ROUND - 1) % ${#SERVERS[@]} ))]}" "$case"
    done
  done
done

psql "$ROLE_URL/intake" -q -c "DROP DATABASE IF EXISTS peer_bench WITH (FORCE)"

echo "== soak (intake alone, a mixed load at a fixed rate)"
start_intake
if [ -n "${QUICK:-}" ]; then soak_rate=20 soak_minutes=1; else soak_rate=100 soak_minutes=10; fi
"$BENCH" soak --address "127.0.0.1:$PORT" --pid "$SERVER_PID" --rate "$soak_rate" \
  --minutes "$soak_minutes" --out "$WORK/soak.json"
stop

echo "== the machine's ceilings"
big=$((1024 * 1024 * 1024)) small=2000
[ -n "${QUICK:-}" ] && big=$((64 * 1024 * 1024)) small=64
mkdir -p "$WORK/s3/bench"
"$venv/bin/python" bench/peer/s3_put.py "http://127.0.0.1:$S3_PORT" bench bench-secret bench "$small" "$big" > "$WORK/s3-boto3.json"
"$BENCH" ceilings --dir "$WORK" --out "$WORK/ceilings.json" --s3-boto3 "$WORK/s3-boto3.json"
kill "$S3_PID"; wait "$S3_PID" 2>/dev/null || true; S3_PID=

versions=$("$venv/bin/python" - <<'PY'
import importlib.metadata as m, platform
print("Python " + platform.python_version() + ", " + ", ".join(f"{p} {m.version(p)}" for p in ("fastapi", "uvicorn", "python-multipart", "asyncpg", "boto3")))
PY
)
header="Made by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(git rev-parse --short HEAD).
Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/{printf "%.0f", $2 / 1048576}' /proc/meminfo) GiB,
kernel $(uname -r); $(rustc --version); ${versions}; Node.js $(node --version); Postgres $(psql "$ROLE_URL/intake" -Atc 'SHOW server_version').
Every case ran in ${ROUNDS} rounds, the servers interleaved within each round (each started afresh for its case); a figure is the median over rounds.
Client and server share the machine: the load generator (\`bench/\`, one thread; two for \`/slow\` and
\`/ping\`, where one thread cannot keep the server busy) opens every connection and completes one \`GET /ping\` on it before the clock starts. intake runs with its local defaults (durable: fsync and commit before \`201\`;
no auth, quota or rate limit: docs/access-control.md says what each adds) and \`log.level=warn\`. An upload counts only if the server's answer reports the right size and SHA-256 (intake, the durable peer, the bare sink), the right size (the in-memory peer), or if the file it names, read back after the case, has the right SHA-256 (rustypaste, @tus/server). Every FastAPI peer runs uvicorn[standard] with 2 workers (one per core).
Where the time goes, with the profiles behind it: [profiles.md](profiles.md)."

"$BENCH" report --results "$RESULTS" --ceilings "$WORK/ceilings.json" --soak "$WORK/soak.json" \
  --header "$header" --markdown "$DOCS/benchmarks.md" --svg "$DOCS/benchmarks.svg"
cp "$RESULTS" "$DOCS/benchmarks.jsonl"
cp "$WORK/ceilings.json" "$DOCS/benchmarks-ceilings.json"
cp "$WORK/soak.json" "$DOCS/benchmarks-soak.json"
echo "== wrote $DOCS/benchmarks.md and $DOCS/benchmarks.svg"
"$BENCH" check --results "$RESULTS" --soak "$WORK/soak.json"
