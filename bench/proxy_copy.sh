# Sourced by the benchmark scripts: a copy of HEAD with its own SQLite database, .env, route and key, started
# with `make run` exactly as users start it. Expects REPO, WORK, MOCK_PORT and STREAM_LIMIT (concurrent streams
# the key and its user may run); sets KEY and PY.
#
# The copy (git archive) keeps the checkout's database and secrets untouched, and edits to the tree during a
# run out of what is measured. Authentication, the ledger and rate limits stay on: the key and its user have
# limits far above the load (counted in the database, as without REDIS_URL; set REDIS_URL to count in Redis).
rm -rf "$WORK" && mkdir -p "$WORK/src"
git -C "$REPO" archive HEAD | tar -x -C "$WORK/src"
echo "proxy at $(git -C "$REPO" rev-parse --short HEAD) -> $WORK/src"
# The checkout's venv is already installed: older requirement files keep `make run` from reinstalling into it.
ln -s "$REPO/.venv" "$WORK/src/.venv"
touch -d '2000-01-01' "$WORK/src/requirements.txt" "$WORK/src/requirements-dev.txt"
make -s -C "$WORK/src" .env > /dev/null

export DATABASE_URL="sqlite:///$WORK/db.sqlite3"
PY="$WORK/src/.venv/bin/python"
(cd "$WORK/src" && "$PY" manage.py migrate -v0)
KEY=$(cd "$WORK/src" && "$PY" manage.py createkey --user bench --create-user --label bench)
LIMITS="{requests_per_minute: 10000000, tokens_per_minute: 1000000000, concurrent_streams: $STREAM_LIMIT}"
cat > "$WORK/proxy.yaml" <<YAML
upstreams:
  - {name: mock, format: openai-chat, base_url: 'http://127.0.0.1:$MOCK_PORT/v1', api_key: sk-mock}
aliases:
  - {name: claude-3-5-sonnet-20241022, upstream: mock, model: mock-model}
users:
  - username: bench
    limits: $LIMITS
    keys:
      - label: bench
        limits: $LIMITS
YAML
(cd "$WORK/src" && "$PY" manage.py importconfig "$WORK/proxy.yaml" > /dev/null)
