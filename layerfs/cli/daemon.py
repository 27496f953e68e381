"""Running the mount in the background: fork, detach, and tell the parent when the
mount is ready (or why it failed), so that ``layerfs mount`` returns only then."""

from __future__ import annotations

import logging
import os

import click

from .common import setup_logging


def daemonize(run, log_level: str, log_file: str) -> None:  # type: ignore[no-untyped-def]
    """Fork; the parent returns once the mount is ready (or fails with the reason)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode()
        if message != "ready":
            raise click.ClickException(message or f"the daemon exited; see {log_file}")
        return
    os.close(read_end)
    os.setsid()
    setup_logging(log_level, log_file)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)

    def ready() -> None:
        os.write(write_end, b"ready")
        os.close(write_end)

    code = 0
    try:
        run(ready)
    except Exception as exc:
        logging.getLogger("layerfs").exception("mount failed")
        try:
            os.write(write_end, str(exc).encode())
            os.close(write_end)
        except OSError:
            pass
        code = 1
    os._exit(code)
