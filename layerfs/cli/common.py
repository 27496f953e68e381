"""The ``layerfs`` command group and what its commands share: opening a STORE,
logging, sizes for people."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from .. import __version__
from ..drivers import StorageDriverError, driver_from_url

DEFAULT_STORE = "/var/lib/docker-registry"  # Debian docker-registry's rootdirectory


DEFAULT_MOUNTPOINT = "/mnt/layerfs"


LOG_LEVELS = ["debug", "info", "warning", "error"]


@click.group()
@click.version_option(__version__, prog_name="layerfs")
def cli() -> None:
    """Mount a container registry's storage as a directory."""


def default_log_file(mountpoint: str) -> str:
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "layerfs"
    if os.geteuid() == 0:
        base = Path("/var/log/layerfs")
    name = os.path.realpath(mountpoint).strip("/").replace("/", "-") or "root"
    return str(base / f"{name}.log")


def open_store(store: str, s3: dict | None = None):  # type: ignore[no-untyped-def]
    """The driver for a STORE argument; a store that cannot be opened is a usage error."""
    if "://" not in store and os.path.exists(store) and not os.path.isdir(store):
        raise click.UsageError(f"STORE {store} is not a directory")
    try:
        return driver_from_url(store, s3)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def setup_logging(level: str, log_file: str | None) -> None:
    handler: logging.Handler
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("pyfuse3", "botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


STORE_FAILED = 8  # the store could not be read or written (fsck's "failed", too)


def main() -> None:
    """Entry point; ``layerfs STORE MOUNTPOINT -o opts`` (as mount.fuse3 calls it from
    an fstab line) means ``layerfs mount``. A store that fails (an endpoint that does
    not answer, a bucket that is not there) ends any command with one line, exit 8."""
    args = sys.argv[1:]
    if args and not args[0].startswith("-") and args[0] not in cli.commands:
        args = ["mount", *args]
    try:
        cli.main(args=args, prog_name="layerfs")
    except BaseException as exc:
        failure = _store_failure(exc)
        if failure is None:
            raise
        click.echo(f"layerfs: the store failed: {failure}", err=True)
        sys.exit(STORE_FAILED)


def _store_failure(exc: BaseException) -> StorageDriverError | None:
    """The driver error at the bottom of ``exc`` (trio wraps errors in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, StorageDriverError) else None
