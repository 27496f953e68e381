"""``layerfs mount``, ``umount`` and ``status``."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from pathlib import Path

import click
import trio

from .common import (
    DEFAULT_MOUNTPOINT,
    DEFAULT_STORE,
    LOG_LEVELS,
    cli,
    default_log_file,
    human,
    open_store,
    setup_logging,
)
from .daemon import daemonize


@cli.command()
@click.option("-f", "--foreground", is_flag=True, help="Stay in the foreground.")
@click.option("-o", "options", default="", help="Mount options: ro,allow_other,...")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
@click.option("--log-file", help="Log here (default: stderr with -f, else a file per mount).")
@click.option("--config", "config", help="Mount the store a registry's config.yml names.")
@click.argument("args", nargs=-1)
def mount(
    foreground: bool,
    options: str,
    log_level: str,
    log_file: str | None,
    config: str | None,
    args: tuple[str, ...],
) -> None:
    """Mount STORE (a directory, s3://BUCKET[/ROOT] or memory://) at MOUNTPOINT:
    layerfs mount [STORE [MOUNTPOINT]], or layerfs mount --config FILE MOUNTPOINT."""
    from ..config import ConfigError, store_from_config
    from ..fs.mount import MountError, fuse_device_problem, is_mounted, parse_options, serve
    from ..storage.store import Store

    try:
        mount_options = parse_options(options)
    except MountError as exc:
        raise click.UsageError(str(exc)) from None
    if config is not None:
        if len(args) != 1:
            raise click.UsageError("with --config, give only the MOUNTPOINT")
        if mount_options.s3:
            raise click.UsageError(
                f"{', '.join(sorted(mount_options.s3))}: with --config, the file names the store"
            )
        try:
            configured = store_from_config(config)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        driver, mountpoint = configured.driver, args[0]
        if configured.read_only:
            mount_options.fuse.add("ro")
            mount_options.read_only = True
    else:
        if len(args) > 2:
            raise click.UsageError("give at most STORE and MOUNTPOINT")
        store = args[0] if args else DEFAULT_STORE
        mountpoint = args[1] if len(args) > 1 else DEFAULT_MOUNTPOINT
        driver = open_store(store, mount_options.s3)
    if os.path.exists(mountpoint) and not os.path.isdir(mountpoint):
        raise click.UsageError(f"MOUNTPOINT {mountpoint} is not a directory")
    os.makedirs(mountpoint, exist_ok=True)
    if is_mounted(mountpoint):
        raise click.ClickException(f"{mountpoint} is already mounted")
    if why := fuse_device_problem():
        raise click.ClickException(why)

    def run(on_ready) -> None:  # type: ignore[no-untyped-def]
        trio.run(serve, Store(driver), mountpoint, mount_options, on_ready)

    if foreground:
        setup_logging(log_level, log_file)
        try:
            run(lambda: None)
        except MountError as exc:
            raise click.ClickException(str(exc)) from None
        return
    log_file = log_file or default_log_file(mountpoint)
    try:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(
            f"cannot make the log's directory for {log_file}: {exc.strerror}; give --log-file"
        ) from None
    daemonize(run, log_level, log_file)


def _daemon_pid(mountpoint: str) -> int | None:
    try:
        return int(os.getxattr(mountpoint, "user.layerfs.pid"))
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@cli.command()
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the daemon.")
@click.argument("mountpoint")
def umount(mountpoint: str, timeout: float) -> None:
    """Unmount MOUNTPOINT and wait until its daemon has exited."""
    pid = _daemon_pid(mountpoint)
    result = subprocess.run(["fusermount3", "-u", mountpoint], capture_output=True, text=True)
    if result.returncode != 0:
        if pid is not None:
            raise click.ClickException(result.stderr.strip())
        # a daemon that died leaves a mount nobody answers: detach it
        lazy = subprocess.run(
            ["fusermount3", "-u", "-z", mountpoint], capture_output=True, text=True
        )
        if lazy.returncode != 0:
            raise click.ClickException(result.stderr.strip())
        return
    deadline = time.monotonic() + timeout
    while pid is not None and _alive(pid):
        if time.monotonic() > deadline:
            raise click.ClickException(f"the daemon (pid {pid}) has not exited after {timeout} s")
        time.sleep(0.05)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.argument("mountpoint")
def status(mountpoint: str, as_json: bool) -> None:
    """List the uploads in progress on the mount at MOUNTPOINT."""
    try:
        uploads = _mount_uploads(mountpoint)
    except OSError as exc:
        raise click.ClickException(f"{mountpoint} is not a layerfs mount: {exc.strerror}") from None
    if as_json:
        click.echo(json.dumps(uploads, indent=2))
        return
    if not uploads:
        click.echo("no uploads in progress")
        return
    click.echo(f"{'REPOSITORY':30} {'NAME':30} {'BYTES':>14} {'RATE':>12} {'AGE':>8}")
    for u in uploads:
        click.echo(
            f"{u['repository']:30} {u['name']:30} {u['bytes']:>14,} "
            f"{human(u['rate'])+'/s':>12} {u['age']:>7.0f}s"
        )


def _mount_uploads(mountpoint: str) -> list[dict]:
    """The open uploads a mount lists in ``user.layerfs.uploads`` and its pages
    ``user.layerfs.uploads.1``, ``.2``… (one xattr holds at most 64 KiB)."""
    uploads = json.loads(os.getxattr(mountpoint, "user.layerfs.uploads"))
    page = 1
    while True:
        try:
            uploads += json.loads(os.getxattr(mountpoint, f"user.layerfs.uploads.{page}"))
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                return uploads
            raise
        page += 1
