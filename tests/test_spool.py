"""The ledger's spool (usage.spool) and the write path over it (usage.ledger.write_pending), in this process: what
is appended is written once, a database outage keeps every row, a refused row is dropped without holding up the
rows behind it, a committed segment that a crash left behind is not written twice, the disk bound holds, and a
live process's spool is never adopted while a dead one's is."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError

from routing.models import ProxyKey
from translation.usage import Usage
from usage import ledger, rollups, spool
from usage.ledger import ExchangeRecord
from usage.models import LedgerEntry, UsageRollup
from usage.spool import Spool

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def own_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Spool]:
    """This process's ledger with an empty queue and a spool in a temporary directory."""
    monkeypatch.setattr(ledger, "_pending", deque(maxlen=ledger.MAX_PENDING))
    monkeypatch.setattr(ledger, "in_flight", {})
    current = Spool(tmp_path / "db", max_bytes=10_000_000)
    current.open()
    previous = spool.reset_for_tests(current)
    yield current
    current.close()
    spool.reset_for_tests(previous)


@pytest.fixture
def key(db: None) -> ProxyKey:
    user = User.objects.create_user("alice")
    proxy_key, _ = ProxyKey.issue(user, label="laptop")
    return proxy_key


def finished(key: ProxyKey, alias: str = "m", output: int | None = 20) -> ExchangeRecord:
    record = ExchangeRecord("openai-chat", "/v1/chat/completions", client_program="OpenAI SDK (Python)")
    record.key_id, record.user_id = key.id, key.user_id
    record.requested_model, record.alias, record.upstream, record.upstream_model = "m", alias, "up", "real-model"
    record.usage = Usage(input_tokens=70, cache_read_tokens=30, output_tokens=output)
    ledger.record_exchange(record)
    return record


def segment_lines(directory: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in directory.rglob("*.jsonl"))


# --- the write path -------------------------------------------------------------------------------------------


def test_a_finished_exchange_is_on_disk_at_once_and_written_once(own_spool, key):
    records = [finished(key) for _ in range(3)]
    assert own_spool.dir is not None
    assert segment_lines(own_spool.dir) == 3  # before any write pass: a crash now loses nothing
    assert ledger.pending_count() == 3
    assert ledger.write_pending() == 3
    rows = list(LedgerEntry.objects.order_by("id"))
    assert [r.exchange_id for r in rows] == [r.id for r in records]
    assert (rows[0].input_tokens, rows[0].cache_read_tokens, rows[0].output_tokens) == (70, 30, 20)
    assert segment_lines(own_spool.dir) == 0 and ledger.pending_count() == 0
    assert UsageRollup.objects.get(hours=1).requests == 3


def test_a_database_outage_keeps_every_row_until_the_database_is_back(own_spool, key, monkeypatch):
    finished(key)
    finished(key)

    def locked(rows, using=None):
        raise OperationalError("database is locked")

    monkeypatch.setattr(ledger, "apply_rollups", locked)
    for _ in range(3):
        with pytest.raises(ledger.DatabaseUnavailable):
            ledger.write_pending()
    finished(key)  # exchanges keep finishing during the outage
    assert LedgerEntry.objects.count() == 0
    assert ledger.pending_count() == 3
    monkeypatch.setattr(ledger, "apply_rollups", rollups.apply_rollups)
    assert ledger.write_pending() == 3
    assert LedgerEntry.objects.count() == 3
    assert ledger.pending_count() == 0


def test_a_row_the_rollups_refuse_is_dropped_with_one_line_and_the_rows_behind_it_are_written(
    own_spool, key, monkeypatch, caplog
):
    def refusing(rows, using=None):
        if any(row.alias == "poison" for row in rows):
            raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
        rollups.apply_rollups(rows, using)

    monkeypatch.setattr(ledger, "apply_rollups", refusing)
    finished(key)
    poisoned = finished(key, alias="poison")
    finished(key)
    with caplog.at_level(logging.ERROR, logger="usage.ledger"):
        assert ledger.write_pending() == 2
    assert sorted(LedgerEntry.objects.values_list("alias", flat=True)) == ["m", "m"]
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and poisoned.id in dropped[0].getMessage()
    assert ledger.pending_count() == 0
    finished(key)  # and the ledger goes on
    assert ledger.write_pending() == 1


def test_a_segment_committed_before_a_crash_deleted_it_is_not_written_twice(own_spool, key, monkeypatch):
    finished(key)
    finished(key)
    # The rows are committed, then the process dies before the segment is deleted.
    monkeypatch.setattr(Spool, "finished", lambda self, segment, lines: None)
    assert ledger.write_pending() == 2
    monkeypatch.undo()
    own_spool.close()
    assert own_spool.dir is not None
    after_restart = Spool(own_spool.root, max_bytes=10_000_000)
    spool.reset_for_tests(after_restart)
    assert after_restart.adopt() == 1
    assert ledger.write_pending() == 0
    assert LedgerEntry.objects.count() == 2
    assert UsageRollup.objects.get(hours=1).requests == 2
    assert segment_lines(own_spool.root) == 0
    after_restart.close()


def test_usage_numbers_from_a_damaged_line_cost_that_row_only(own_spool, key):
    record = finished(key)
    assert own_spool.dir is not None
    (segment,) = own_spool.dir.glob("*.jsonl")
    facts = json.loads(segment.read_bytes())
    damaged = {**facts, "id": "damaged", "usage": ["7", 10**20, -5, 3.0, None], "status": "x"}
    with segment.open("ab") as handle:
        handle.write(json.dumps(damaged).encode() + b"\n" + b"not json\n" + b'{"id": "cut short')
    assert ledger.write_pending() == 2
    row = LedgerEntry.objects.get(exchange_id="damaged")
    assert (row.input_tokens, row.cache_read_tokens, row.cache_write_tokens, row.output_tokens) == (7, None, None, 3)
    assert LedgerEntry.objects.filter(exchange_id=record.id).exists()


# --- the spool itself -----------------------------------------------------------------------------------------


def test_past_its_bound_the_spool_says_so_once_and_rows_wait_in_memory(tmp_path, caplog):
    small = Spool(tmp_path, max_bytes=100)
    small.open()
    line = b"x" * 40 + b"\n"
    with caplog.at_level(logging.WARNING, logger="usage.spool"):
        assert small.append(line) and small.append(line)
        assert not small.append(line)
        assert not small.append(line)
        full = [r for r in caplog.records if "spool full" in r.getMessage()]
        assert len(full) == 1
        small.sync()
        (segment,) = small.closed_segments()
        small.finished(segment, 2)
        assert small.append(line)
        assert any("room again" in r.getMessage() for r in caplog.records)
    assert small.unwritten == 1
    small.close()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from usage.spool import Spool
    spool = Spool(Path(sys.argv[1]), 1_000_000)
    spool.open()
    spool.append(b'{"id": "from-the-other-process"}\\n')
    print("ready", flush=True)
    time.sleep(300)
    """
)


def test_a_live_process_spool_is_never_adopted_and_a_dead_one_is(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        mine = Spool(tmp_path, 1_000_000)
        assert mine.adopt() == 0  # its owner holds the lock
        assert mine.unwritten == 0
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert mine.adopt() == 1
    assert mine.dir is not None
    (segment,) = mine.closed_segments()
    assert segment.parent == mine.dir and b"from-the-other-process" in segment.read_bytes()
    assert [p for p in tmp_path.iterdir() if p != mine.dir] == []  # the dead process's directory is gone
    mine.close()
