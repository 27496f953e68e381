"""The ``layerfs`` command group and what its commands share: opening a STORE,
logging, sizes for people."""

from __future__ import annotations

import difflib
import logging
import os
import sys
from pathlib import Path

import click

from .. import __version__
from ..drivers import StorageDriverError, driver_from_url

DEFAULT_STORE = "/var/lib/docker-registry"  # Debian docker-registry's rootdirectory


DEFAULT_MOUNTPOINT = "/mnt/layerfs"
STORE_FAILED = 8  # the store could not be read or written (fsck's "failed", too)


LOG_LEVELS = ["debug", "info", "warning", "error"]


class _Commands(click.Group):
    """A command group whose "No such command" names the closest command."""

    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[no-untyped-def]
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            ctx.fail(f"No such command '{name}'.{hint}")
        return super().resolve_command(ctx, args)


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="layerfs")
def cli() -> None:
    """Mount a container registry's storage as a directory."""


def default_log_file(mountpoint: str) -> str:
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "layerfs"
    if os.geteuid() == 0:
        base = Path("/var/log/layerfs")
    name = os.path.realpath(mountpoint).strip("/").replace("/", "-") or "root"
    return str(base / f"{name}.log")


def open_store(store: str, s3: dict | None = None, existing: bool = False):  # type: ignore[no-untyped-def]
    """The driver for a STORE argument; a store that cannot be opened is a usage error.
    With ``existing`` (commands that read a store: fsck, gc, purge-uploads, export) a
    local path must already be a registry store, and nothing is created."""
    if "://" not in store and os.path.exists(store) and not os.path.isdir(store):
        raise click.UsageError(f"STORE {store} is not a directory")
    if existing and "://" not in store and (why := not_a_store(store)):
        click.echo(f"layerfs: {store} is not a registry store: {why}", err=True)
        sys.exit(STORE_FAILED)
    try:
        return driver_from_url(store, s3, create=not existing)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def store_of(argument: str) -> str:
    """The store a command reads: ``argument`` itself, or, for a layerfs mount
    point, the store that mount serves (its root's ``user.layerfs.store``)."""
    if "://" in argument or not os.path.isdir(argument):
        return argument
    try:
        return os.getxattr(argument, "user.layerfs.store").decode()
    except OSError:
        return argument


def not_a_store(path: str) -> str:
    """Why ``path`` is not a registry store's root directory, or "" when it is: one
    holds ``docker/registry/v2``, or nothing yet (a registry that never stored)."""
    if not os.path.isdir(path):
        return "no such directory"
    if os.path.isdir(os.path.join(path, "docker", "registry", "v2")):
        return ""
    if not os.listdir(path):
        return ""
    return "it holds no docker/registry/v2"


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


def progress_bar(desc: str, enabled: bool, **units):  # type: ignore[no-untyped-def]
    """A tqdm bar on stderr when it is a terminal (and ``enabled``); nothing otherwise."""
    from tqdm import tqdm

    return tqdm(total=0, desc=desc, disable=None if enabled else True, leave=False, **units)


def plural(count: int, noun: str, nouns: str = "") -> str:
    """``1 blob``, ``2 blobs``; ``nouns`` where the plural is not noun + s."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def main() -> None:
    """Entry point; ``layerfs STORE MOUNTPOINT -o opts`` (as mount.fuse3 calls it from
    an fstab line) means ``layerfs mount``. A store that fails (an endpoint that does
    not answer, a bucket that is not there) ends any command with one line, exit 8."""
    args = sys.argv[1:]
    if _is_mount_helper_call(args):
        args = ["mount", *args]
    try:
        cli.main(args=args, prog_name="layerfs")
    except BaseException as exc:
        failure = _store_failure(exc)
        if failure is None:
            raise
        click.echo(f"layerfs: the store failed: {failure}", err=True)
        sys.exit(STORE_FAILED)


def _is_mount_helper_call(args: list[str]) -> bool:
    """Whether ``layerfs SOURCE MOUNTPOINT -o …`` came from mount(8): the program runs
    as ``mount.fuse.layerfs``, or with ``-o`` and two paths that exist. A mistyped
    command (``layerfs fsk /srv/store``) gets click's "No such command" instead of a
    mount over the store."""
    if not args or args[0].startswith("-") or args[0] in cli.commands:
        return False
    if os.path.basename(sys.argv[0]).startswith("mount.fuse"):
        return True
    paths = [a for a in args if not a.startswith("-")]
    return "-o" in args and len(paths) >= 2 and all(os.path.exists(p) for p in paths[:2])


def _store_failure(exc: BaseException) -> StorageDriverError | None:
    """The driver error at the bottom of ``exc`` (trio wraps errors in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, StorageDriverError) else None
