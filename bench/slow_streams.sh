#!/usr/bin/env bash
# Many slow streams on ONE worker: STREAMS (1,000) concurrent Anthropic Messages streams through `WORKERS=1 make
# run` to the shared OpenAI Chat mock, each CHUNKS (40) text chunks DELAY_MS (250) ms apart (about 10 s). Prints
# how many completed, the errors, and the worker's peak RSS. Usage, from the repository root:
#
#   bench/slow_streams.sh                       # ~1 minute; STREAMS, CHUNKS, DELAY_MS to change the load
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHARED_BENCH=${SHARED_BENCH:-$REPO/../shared/bench}
WORK=${WORK:-${TMPDIR:-/tmp}/llmproxy-slow-streams}
PORT=${PORT:-18081}
MOCK_PORT=${MOCK_PORT:-18001}
STREAMS=${STREAMS:-1000}
CHUNKS=${CHUNKS:-40}
DELAY_MS=${DELAY_MS:-250}
ulimit -n 65536 2> /dev/null || ulimit -n "$(ulimit -Hn)"

STREAM_LIMIT=$((STREAMS * 2))
# shellcheck source=bench/proxy_copy.sh
source "$REPO/bench/proxy_copy.sh"

node "$SHARED_BENCH/mock_upstream.js" --port "$MOCK_PORT" --chunks "$CHUNKS" --delay-ms "$DELAY_MS" > "$WORK/mock.log" 2>&1 &
MOCK=$!
WORKERS=1 setsid make -s -C "$WORK/src" run PORT="$PORT" > "$WORK/proxy.log" 2>&1 &
PROXY=$!
trap 'kill -TERM -- -$PROXY 2> /dev/null; kill $MOCK 2> /dev/null; wait 2> /dev/null' EXIT
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done
WORKER=$(pgrep -f "llmproxy_site.server" -P "$(pgrep -f "supervisord.*run/$PORT/" | head -1)" | head -1)
echo "worker pid $WORKER; $STREAMS streams of $CHUNKS chunks ${DELAY_MS} ms apart"
"$PY" "$REPO/bench/slow_streams_client.py" --url "http://127.0.0.1:$PORT/v1/messages" --key "$KEY" \
  --streams "$STREAMS" --chunks "$CHUNKS" --watch-pid "$WORKER"
