"""`make run`'s server: several worker processes of `llmproxy_site.server` sharing one listening socket.

As Channels documents deploying daphne: a process manager owns the socket and hands it to each worker as its
standard input (`daphne --fd 0`). The manager is supervisor's `fcgi-program` (supervisord in the foreground);
this module only writes its configuration from the settings and replaces itself with supervisord, so that
signals reach the manager directly:

- WORKERS processes (0, the default: one per core), each a whole server with its own event loop, database
  thread and background worker. The kernel hands each new connection to one of them.
- A worker that exits (a crash, a SIGKILL) is started again at once.
- SIGTERM or SIGINT to the manager sends SIGTERM to every worker; each stops as a lone server does (draining
  for DRAIN_DELAY_SECONDS, then running requests cancelled and recorded as interrupted after the ledger's grace,
  the ledger written) and is killed only if it takes longer than WORKER_STOP_TIMEOUT.
- Every worker's output, and the manager's own lines (started, exited, restarted), go to the manager's standard
  output: the terminal of `make run`. Log lines carry the process id (settings.LOGGING).

What the workers share across processes (configuration, rate limits, budgets, the ledger, the live view with
REDIS_URL) goes through the database or Redis already: nothing here is specific to several workers.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import sys
from pathlib import Path

import django

APPLICATION = "llmproxy_site.asgi:application"
PROGRAM = "llmproxy"


def worker_count(configured: int) -> int:
    """WORKERS, or one per core when it is 0."""
    return configured if configured > 0 else max(os.cpu_count() or 1, 1)


def stop_wait_seconds(configured: float, ledger_grace: float, drain_delay: float = 0.0) -> int:
    """How long supervisord waits for a worker after SIGTERM before SIGKILL: never shorter than the drain delay
    (still serving while the balancer takes the server out), the ledger's own grace for running exchanges and
    a second for its last write (a kill then would lose rows to the next start's spool adoption, and cut the
    streams that were still finishing)."""
    return math.ceil(max(configured, max(drain_delay, 0.0) + ledger_grace + 1.0))


def _quoted(value: str) -> str:
    """A value for supervisord's configuration: it expands `%(name)s`, so a literal `%` is doubled."""
    return value.replace("%", "%%")


def supervisor_config(*, host: str, port: int, workers: int, stop_wait: int, run_dir: Path, root: Path) -> str:
    server = [sys.executable, "-m", "llmproxy_site.server", "--fd", "0", APPLICATION]
    address = f"[{host}]" if ":" in host else host
    # Run as whoever started it; said explicitly for root (a container), where supervisord would otherwise log a
    # CRIT line about privileges at every start.
    user = "user=root\n" if os.geteuid() == 0 else ""
    return f"""\
[supervisord]
{user}nodaemon=true
logfile=/dev/null
logfile_maxbytes=0
loglevel=info
pidfile={_quoted(str(run_dir / "supervisord.pid"))}
directory={_quoted(str(root))}

[fcgi-program:{PROGRAM}]
socket=tcp://{address}:{port}
socket_backlog=2048
command={_quoted(shlex.join(server))}
directory={_quoted(str(root))}
numprocs={workers}
process_name=%(program_name)s_%(process_num)02d
autostart=true
autorestart=true
startsecs=1
stopsignal=TERM
stopwaitsecs={stop_wait}
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
redirect_stderr=true
"""


def main(argv: list[str] | None = None) -> None:
    # Django's settings are the one place HOST, PORT, WORKERS and the stop timeout are read (env and .env).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmproxy_site.settings")
    django.setup()
    from django.conf import settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--host", default=settings.HOST, help="address to listen on (HOST)")
    parser.add_argument("--port", type=int, default=settings.PORT, help="port to listen on (PORT)")
    parser.add_argument("--workers", type=int, default=settings.WORKERS, help="processes; 0: one per core (WORKERS)")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=Path(settings.BASE_DIR) / "var" / "run",
        help="where the supervisord configuration and pid file are written",
    )
    args = parser.parse_args(argv)

    workers = worker_count(args.workers)
    run_dir: Path = args.run_dir.resolve() / str(args.port)
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = run_dir / "supervisord.conf"
    config.write_text(
        supervisor_config(
            host=args.host,
            port=args.port,
            workers=workers,
            stop_wait=stop_wait_seconds(
                settings.WORKER_STOP_TIMEOUT, settings.SHUTDOWN_GRACE_SECONDS, settings.DRAIN_DELAY_SECONDS
            ),
            run_dir=run_dir,
            root=Path(settings.BASE_DIR),
        )
    )
    supervisord = shutil.which("supervisord", path=str(Path(sys.executable).parent)) or shutil.which("supervisord")
    if supervisord is None:
        sys.exit("supervisord not found: install requirements.txt (pip install -r requirements.txt)")
    print(f"Serving on http://{args.host}:{args.port}/ with {workers} worker process(es)", flush=True)
    # supervisord takes this process's place: SIGTERM/SIGINT sent to it (or Ctrl-C) reach the manager itself.
    os.execv(supervisord, [supervisord, "--nodaemon", "--configuration", str(config)])


if __name__ == "__main__":
    main()
