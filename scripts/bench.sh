#!/usr/bin/env bash
# intake's benchmark, end to end: builds intake in release mode, runs it against the local
# Postgres with a temporary storage root, runs the suite against it and against the tutorial's
# FastAPI service (uvicorn 1 worker; uvicorn[standard] 2 workers), runs the large-upload cases
# again with intake storing in an S3 server, sends 1 GiB with tus (resumable) on both, (s3s-fs, installed from crates.io when missing),
# measures the machine's ceilings (the S3 server's own PUTs among them), and writes
# docs/benchmarks.md and docs/benchmarks.svg.
#
#   scripts/bench.sh            the full run (about 10 minutes on 2 cores, ~7 GB of disk for a while)
#   QUICK=1 scripts/bench.sh    one small round per case: checks that everything works
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
SERVER_PID=
S3_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$S3_PID" ]; then kill "$S3_PID" 2>/dev/null || true; wait "$S3_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() { # URL: wait up to 60 s for a 200
  for _ in $(seq 1 600); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "bench: $1 did not come up" >&2
  return 1
}

stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=
}

echo "== building (release)"
cargo build --release --locked -p intake -p intake-bench
BENCH=$PWD/target/release/intake-bench

echo "== the peer's virtual environments"
for venv in bench-venv bench-venv-std; do
  [ -x "target/$venv/bin/uvicorn" ] && continue
  python3 -m venv "target/$venv"
  uvicorn=uvicorn; [ "$venv" = bench-venv-std ] && uvicorn='uvicorn[standard]'
  "target/$venv/bin/pip" install --quiet fastapi "$uvicorn" python-multipart
done

start_intake() { # extra VAR=value settings
  psql "$ROLE_URL/intake" -q -c "DROP DATABASE IF EXISTS intake_bench WITH (FORCE)" -c "CREATE DATABASE intake_bench"
  env APP__SERVER__PORT=$PORT APP__DATABASE__URL=$DB_URL APP__STORAGE__ROOT=$WORK/storage \
    APP__LOG__LEVEL=warn APP_ENVIRONMENT=local "$@" target/release/intake &
  SERVER_PID=$!
  wait_for "http://127.0.0.1:$PORT/health/ready"
}
stop_intake() {
  stop_server
  psql "$ROLE_URL/intake" -q -c "DROP DATABASE IF EXISTS intake_bench WITH (FORCE)"
  rm -rf "$WORK/storage"
}

echo "== intake"
start_intake
"$BENCH" suite --address "127.0.0.1:$PORT" --pid "$SERVER_PID" --target intake --out "$WORK/results.jsonl" $QUICK_FLAG
"$BENCH" tus --address "127.0.0.1:$PORT" --pid "$SERVER_PID" --target intake --out "$WORK/results.jsonl" $QUICK_FLAG
stop_intake

echo "== intake on S3 (s3s-fs)"
command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --locked --features binary
mkdir -p "$WORK/s3/bench"
s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key bench --secret-key bench-secret "$WORK/s3" &
S3_PID=$!
# Any answer will do (it refuses unsigned requests): it listens.
for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break; sleep 0.1; done
start_intake APP__STORAGE__KIND=s3 APP__STORAGE__S3__BUCKET=bench \
  APP__STORAGE__S3__ENDPOINT="http://127.0.0.1:$S3_PORT" APP__STORAGE__S3__ACCESS_KEY_ID=bench \
  APP__STORAGE__S3__SECRET_ACCESS_KEY=bench-secret APP__STORAGE__S3__PATH_STYLE=true
for case in "upload 1 MiB c=16" "upload 1 GiB c=1"; do
  "$BENCH" suite --address "127.0.0.1:$PORT" --pid "$SERVER_PID" --target "intake (S3)" \
    --out "$WORK/results.jsonl" --only "$case" $QUICK_FLAG
done
"$BENCH" tus --address "127.0.0.1:$PORT" --pid "$SERVER_PID" --target "intake (S3)" --out "$WORK/results.jsonl" $QUICK_FLAG
stop_intake

run_peer() { # VENV WORKERS LABEL
  (cd bench/peer && exec "../../target/$1/bin/uvicorn" app:app --host 127.0.0.1 --port "$PEER_PORT" \
    --workers "$2" --log-level warning --no-access-log) &
  SERVER_PID=$!
  wait_for "http://127.0.0.1:$PEER_PORT/ping"
  "$BENCH" suite --address "127.0.0.1:$PEER_PORT" --pid "$SERVER_PID" --target "$3" --out "$WORK/results.jsonl" $QUICK_FLAG
  stop_server
}
echo "== FastAPI peer"
run_peer bench-venv 1 "FastAPI, uvicorn, 1 worker"
run_peer bench-venv-std 2 "FastAPI, uvicorn[standard], 2 workers"

echo "== the machine's ceilings"
"$BENCH" ceilings --dir "$WORK" --out "$WORK/ceilings.json" --s3 "$S3_URL" $QUICK_FLAG

versions=$(target/bench-venv-std/bin/python - <<'PY'
import importlib.metadata as m, platform
print("Python " + platform.python_version() + ", " + ", ".join(f"{p} {m.version(p)}" for p in ("fastapi", "uvicorn", "python-multipart")))
PY
)
header="Made by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(git rev-parse --short HEAD).
Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB,
kernel $(uname -r); $(rustc --version); ${versions}.
Client and server share the machine: the load generator (\`bench/\`, one thread; two for \`/slow\` and
\`/ping\`, where one thread cannot keep the server busy) opens every connection and completes one \`GET /ping\` on it before the clock starts. intake runs with its local defaults (durable: fsync and commit before \`201\`;
no auth, quota or rate limit: docs/access-control.md says what each adds) and \`log.level=warn\`; an upload counts only if the answer reports the right size and, where the
server reports one, the right SHA-256 (the peer reports none, and keeps nothing on disk)."

"$BENCH" report --results "$WORK/results.jsonl" --ceilings "$WORK/ceilings.json" \
  --header "$header" --markdown "$DOCS/benchmarks.md" --svg "$DOCS/benchmarks.svg"
cp "$WORK/results.jsonl" "$DOCS/benchmarks.jsonl"
cp "$WORK/ceilings.json" "$DOCS/benchmarks-ceilings.json"
echo "== wrote $DOCS/benchmarks.md and $DOCS/benchmarks.svg"
