#!/usr/bin/env bash
# This proxy beside claude-code-router in ONE run of the shared peer benchmark (../shared/bench/run_peers.sh):
# `direct`, `ccr`, and this proxy twice, started with `make run` as users start it: WORKERS=1 and the shipped
# default (one worker per core). Usage, from the repository root:
#
#   ROUNDS=2 bench/peer_side_by_side.sh            # the shared script's knobs (DURATION, CONCS, ...) pass through
#
# The proxy runs from a copy of HEAD (bench/proxy_copy.sh). The route: an `openai-chat` upstream at the mock,
# alias claude-3-5-sonnet-20241022 -> mock-model, one key with rate limits far above the load.
#
# run_peers.sh measures one `custom` peer per run; a copy of it (in the work directory) gets a second one,
# `custom2`, configured by TARGET2_NAME / TARGET2_START_CMD, so both configurations share the mock and the run.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHARED_BENCH=${SHARED_BENCH:-$REPO/../shared/bench}
WORK=${WORK:-${TMPDIR:-/tmp}/llmproxy-peer-bench}
PORT=${PORT:-18080}
MOCK_PORT=${MOCK_PORT:-18000}
export MOCK_PORT

STREAM_LIMIT=1000
# shellcheck source=bench/proxy_copy.sh
source "$REPO/bench/proxy_copy.sh"

# The second custom peer: the same branch as `custom`, started with TARGET2_START_CMD and named TARGET2_NAME (the
# first is started with TARGET_START_CMD_1).
cp "$SHARED_BENCH"/*.js "$SHARED_BENCH"/*.lua "$SHARED_BENCH"/*.py "$WORK/" && cp -r "$SHARED_BENCH/bodies" \
  "$SHARED_BENCH/peers" "$WORK/"
sed -e 's/^    custom)$/    custom|custom2)\n      TARGET_START_CMD=$TARGET_START_CMD_1; [ "$peer" = custom2 ] \&\& TARGET_START_CMD=$TARGET2_START_CMD/' \
  -e 's/^    name=\$peer; \[ "\$peer" = custom \] && name=\${TARGET_NAME:-custom}$/&; [ "$peer" = custom2 ] \&\& name=$TARGET2_NAME/' \
  "$SHARED_BENCH/run_peers.sh" > "$WORK/run_peers.sh"
[ "$(grep -c custom2 "$WORK/run_peers.sh")" -ge 3 ] || { echo "run_peers.sh changed: the custom2 patch did not apply"; exit 1; }
chmod +x "$WORK/run_peers.sh"

START="make -s -C $WORK/src run PORT=$PORT"
export TARGET_BASE=http://127.0.0.1:$PORT TARGET_PATH=/v1/messages
export TARGET_HEADERS="x-api-key: $KEY|anthropic-version: 2023-06-01"
export TARGET_NAME=ours-w1 TARGET_START_CMD_1="env WORKERS=1 $START"
export TARGET2_NAME=ours-make-run TARGET2_START_CMD="$START"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$WORK/run_peers.sh" direct ccr custom custom2
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
