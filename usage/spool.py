"""The ledger's spool: every finished exchange on local disk until its row is committed.

A crash (SIGKILL, OOM, power loss after the last fsync) or a database outage of any length must not lose
ledger rows. So `usage.ledger.record_exchange` appends each finished record as one JSON line to this process's
current segment file with a single `os.write` on an `O_APPEND` descriptor: a system call, no fsync, so the line
is in the kernel's page cache the moment the exchange ends and survives the process being killed. The ledger's
write pass (`usage.ledger.write_pending`, on the database thread) fsyncs, closes the current segment once it has
lines, and writes the closed segments' rows; a segment is deleted once every row in it is committed (or was
refused by the database and dropped). A process that starts adopts the segments of processes that died
(`replay`), and its write pass writes them; rows carry their exchange id, which is unique in the ledger, so a row
that was committed just before the crash (segment not yet deleted) is not written twice.

Layout: `LEDGER_SPOOL_DIR/<database>/<process>/<segment>.jsonl`. `<database>` is derived from the database
settings, so servers sharing a directory but not a database never write each other's rows. Each process owns
one directory and holds an exclusive `flock` on its `owner.lock` for as long as it lives; the kernel drops the
lock when the process dies, however it dies. `replay` adopts only directories whose lock it can take, so the
several worker processes of one host never touch each other's live files. A directory is created under a
dot-name and renamed into place once locked, so no scanner ever sees it unlocked.

Bound: `LEDGER_SPOOL_MAX_BYTES` over this process's segments (adopted ones included). Past it, records are kept
in memory only (as without a spool, `usage.ledger.MAX_PENDING` of them) and one error line says so; one line
says when the spool has room again.

Only a serving process spools (`replay` opens the spool, and the ledger's job calls it only when `serving()`): a
test or a management command that records exchanges keeps them in memory, and leaves no files for a server to
adopt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

LOCK_NAME = "owner.lock"
SUFFIX = ".jsonl"
# A segment closes at the next write pass once it has lines; during an outage (older segments still waiting)
# it keeps growing until this size, so a long outage makes a few large files rather than one per pass.
SEGMENT_BYTES = 8 * 1024 * 1024


class Spool:
    """One process's spool directory under `root` (a database's directory)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.dir: Path | None = None
        self._lock_fd: int | None = None
        self._guard = threading.Lock()  # appends (event loop) against rotation and accounting (database thread)
        self._fd: int | None = None
        self._current: Path | None = None
        self._current_bytes = 0
        self._seq = 0
        self.bytes = 0  # every segment of this directory, the current one included
        self.unwritten = 0  # lines appended and not yet written (adopted segments count 1 each until read)
        self._full = False
        self._adopted: set[str] = set()

    # -- owning a directory --------------------------------------------------------------------------------

    def open(self) -> None:
        """Create and lock this process's directory (idempotent)."""
        if self.dir is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        staging = self.root / f".{name}.tmp"
        staging.mkdir()
        fd = os.open(staging / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        final = self.root / name
        os.rename(staging, final)
        self._lock_fd = fd
        self.dir = final

    def close(self) -> None:
        """Give up the directory (tests; a process that exits drops its lock anyway). Unwritten segments stay
        for the next process to adopt."""
        with self._guard:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def adopt(self) -> int:
        """Move the segments of dead processes (directories whose lock can be taken) into this directory.
        Returns the number of segments adopted. Renames only: the rows are read by the write pass."""
        self.open()
        assert self.dir is not None
        adopted = 0
        for other in sorted(self.root.iterdir()):
            if other == self.dir or other.name.startswith(".") or not other.is_dir():
                continue
            try:
                fd = os.open(other / LOCK_NAME, os.O_RDWR)
            except FileNotFoundError:
                continue  # being removed by another adopter
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive
                for segment in sorted(other.glob("*" + SUFFIX)):
                    size = segment.stat().st_size
                    target = self.dir / segment.name
                    os.rename(segment, target)
                    with self._guard:
                        self.bytes += size
                        self.unwritten += 1
                        self._adopted.add(target.name)
                    adopted += 1
                with contextlib.suppress(OSError):
                    (other / LOCK_NAME).unlink()
                    other.rmdir()
            finally:
                os.close(fd)
        if adopted:
            logger.warning("usage ledger: adopted %d spool segment(s) of stopped processes; writing them", adopted)
        return adopted

    # -- the request path ----------------------------------------------------------------------------------

    def append(self, line: bytes) -> bool:
        """Append one record line (event loop; one write system call). False: not spooled (full, or the disk
        refused), the caller keeps the record in memory."""
        with self._guard:
            if self.dir is None:
                return False
            if self.bytes + len(line) > self.max_bytes:
                if not self._full:
                    self._full = True
                    logger.error(
                        "usage ledger spool full (%d bytes, LEDGER_SPOOL_MAX_BYTES=%d): new rows are kept in memory "
                        "only until the database takes the spooled ones; a crash now loses them",
                        self.bytes,
                        self.max_bytes,
                    )
                return False
            try:
                if self._fd is None:
                    self._seq += 1
                    self._current = self.dir / f"{time.time_ns():020d}-{os.getpid()}-{self._seq:08d}{SUFFIX}"
                    self._fd = os.open(self._current, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                    self._current_bytes = 0
                written = os.write(self._fd, line)
            except OSError as exc:
                logger.error("usage ledger spool write failed (%s): the row is kept in memory only", exc)
                return False
            self.bytes += written
            self._current_bytes += written
            self.unwritten += 1
            return True

    # -- the write pass (database thread) ------------------------------------------------------------------

    def sync(self) -> None:
        """fsync the current segment, and close it (so the write pass takes it) once it has lines, unless older
        segments are still waiting and it is below SEGMENT_BYTES."""
        with self._guard:
            fd = self._fd
            if fd is None:
                return
            waiting = any(True for _ in self._closed())
            rotate = not waiting or self._current_bytes >= SEGMENT_BYTES
            if rotate:
                self._fd = None
                self._current = None
            else:
                fd = os.dup(fd)
        try:
            os.fsync(fd)
        except OSError as exc:
            logger.error("usage ledger spool fsync failed: %s", exc)
        finally:
            os.close(fd)

    def _closed(self) -> Iterator[Path]:
        assert self.dir is not None
        for path in sorted(self.dir.glob("*" + SUFFIX)):
            if path != self._current:
                yield path

    def closed_segments(self) -> list[Path]:
        """The segments the write pass may read, oldest first."""
        if self.dir is None:
            return []
        with self._guard:
            return list(self._closed())

    def finished(self, segment: Path, lines: int) -> None:
        """Every row of `segment` is committed or dropped: delete it."""
        size = segment.stat().st_size
        segment.unlink()
        with self._guard:
            self.bytes -= size
            self.unwritten -= 1 if segment.name in self._adopted else lines
            self._adopted.discard(segment.name)
            self.unwritten = max(self.unwritten, 0)
            if self._full and self.bytes < self.max_bytes // 2:
                self._full = False
                logger.warning("usage ledger spool has room again (%d bytes): rows are spooled again", self.bytes)


def read_lines(segment: Path) -> Iterator[bytes]:
    """The complete lines of a segment (a line cut short by a power loss has no newline and is skipped)."""
    with segment.open("rb") as handle:
        for line in handle:
            if line.endswith(b"\n"):
                yield line


_spool: Spool | None = None


def database_directory() -> Path:
    """This database's directory under LEDGER_SPOOL_DIR: servers sharing the directory but not the database
    never adopt each other's rows."""
    db = connections["default"].settings_dict
    identity = "|".join(str(db.get(part) or "") for part in ("ENGINE", "HOST", "PORT", "NAME"))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(settings.LEDGER_SPOOL_DIR) / f"{connections['default'].vendor}-{digest}"


def serving() -> bool:
    """Whether this process is a running server (daphne's Twisted reactor runs): only a server spools. Looked up
    without importing the reactor, which would install one."""
    reactor = sys.modules.get("twisted.internet.reactor")
    return bool(getattr(reactor, "running", False))


def current() -> Spool | None:
    """This process's spool, once `replay` opened it."""
    return _spool


def replay() -> int:
    """Open this process's spool (first call) and adopt the segments of processes that died; the next
    `usage.ledger.write_pending` writes their rows. Returns the number of segments adopted. Cheap to call
    again (a directory listing). Does nothing when LEDGER_SPOOL_DIR is empty (spooling turned off)."""
    global _spool
    if not settings.LEDGER_SPOOL_DIR:
        return 0
    if _spool is None:
        spool = Spool(database_directory(), settings.LEDGER_SPOOL_MAX_BYTES)
        try:
            spool.open()
        except OSError as exc:
            logger.error("usage ledger spool unavailable (%s): rows are kept in memory only", exc)
            return 0
        _spool = spool
    try:
        return _spool.adopt()
    except OSError as exc:
        logger.error("usage ledger spool: adopting stopped processes' segments failed: %s", exc)
        return 0


def release() -> None:
    """A stopping server: give up this process's spool directory, and delete it if every row is written
    (otherwise the next process adopts what is left). Records that end after this wait in memory."""
    global _spool
    if _spool is None:
        return
    current, _spool = _spool, None
    current.sync()
    current.close()
    if current.dir is not None and not any(current.dir.glob("*" + SUFFIX)):
        with contextlib.suppress(OSError):
            (current.dir / LOCK_NAME).unlink()
            current.dir.rmdir()
            current.root.rmdir()  # the database's directory, once no process uses it


def sync() -> None:
    """fsync this process's spool (the write pass calls it; exposed for a stopping server)."""
    if _spool is not None:
        _spool.sync()


def reset_for_tests(spool: Spool | None) -> Spool | None:
    """Use `spool` as this process's spool (tests); returns the previous one."""
    global _spool
    previous, _spool = _spool, spool
    return previous
