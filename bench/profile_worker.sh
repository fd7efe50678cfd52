#!/usr/bin/env bash
# Where one worker's time goes under load: `WORKERS=1 make run` (a copy of HEAD, bench/proxy_copy.sh) behind the
# shared OpenAI Chat mock, wrk (non-streaming) or the shared Node client (streaming) at concurrency C, and py-spy
# recording the worker for 8 s. Prints the load's figures and the samples grouped by module and by function.
#
#   .venv/bin/pip install py-spy                  # once (a profiler, not a dependency of the project)
#   bench/profile_worker.sh                       # non-streaming, C=16
#   STREAM=1 DELAY_MS=5 bench/profile_worker.sh   # streaming, chunks 5 ms apart
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHARED_BENCH=${SHARED_BENCH:-$REPO/../shared/bench}
WORK=${WORK:-${TMPDIR:-/tmp}/llmproxy-profile}
PORT=${PORT:-18082}
MOCK_PORT=${MOCK_PORT:-18002}
C=${C:-16}
DELAY_MS=${DELAY_MS:-0}
STREAM_LIMIT=1000
# shellcheck source=bench/proxy_copy.sh
source "$REPO/bench/proxy_copy.sh"

node "$SHARED_BENCH/mock_upstream.js" --port "$MOCK_PORT" --chunks 20 --delay-ms "$DELAY_MS" > "$WORK/mock.log" 2>&1 &
MOCK=$!
WORKERS=1 setsid make -s -C "$WORK/src" run PORT="$PORT" > "$WORK/proxy.log" 2>&1 &
PROXY=$!
trap 'kill -TERM -- -$PROXY 2> /dev/null; kill $MOCK 2> /dev/null; wait 2> /dev/null' EXIT
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done
WORKER=$(pgrep -f "llmproxy_site.server" -P "$(pgrep -f "supervisord.*run/$PORT/" | head -1)" | head -1)
URL="http://127.0.0.1:$PORT/v1/messages"
if [ -n "${STREAM:-}" ]; then
  node "$SHARED_BENCH/loadgen.js" --url "$URL" --body "$SHARED_BENCH/bodies/anthropic_stream.json" --format anthropic \
    --concurrency "$C" --duration 14 --header "x-api-key: $KEY" --header "anthropic-version: 2023-06-01" > "$WORK/load.out" 2>&1 &
else
  BENCH_BODY_FILE="$SHARED_BENCH/bodies/anthropic_nonstream.json" \
    BENCH_HEADERS="x-api-key: $KEY|anthropic-version: 2023-06-01" \
    wrk -t1 -c"$C" -d14s -s "$SHARED_BENCH/wrk_post.lua" "$URL" > "$WORK/load.out" 2>&1 &
fi
LOAD=$!
sleep 3
"$REPO/.venv/bin/py-spy" record -p "$WORKER" -d 8 -r 200 -f raw -o "$WORK/profile.txt" --threads --nonblocking > /dev/null 2>&1
wait $LOAD
grep -E "WRKJSON|LOADJSON" "$WORK/load.out"
"$PY" "$REPO/bench/profile_summary.py" "$WORK/profile.txt"
