"""Running the mount: options, the trio main loop, signals and a clean unmount."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

import pyfuse3
import trio

from ..drivers import StorageDriver
from .operations import Operations

log = logging.getLogger("layerfs.mount")

# mount(8) options that mean nothing to a FUSE daemon (fstab passes them along)
IGNORED_OPTIONS = {
    "rw", "defaults", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "auto", "noauto",
    "nofail", "_netdev", "user", "users", "nouser", "async", "atime", "noatime", "relatime",
}  # fmt: skip
FUSE_FLAGS = {"allow_other", "allow_root", "default_permissions", "auto_unmount"}
FUSE_VALUES = ("fsname=", "subtype=", "max_read=")


class MountError(Exception):
    """A mount that cannot start; the message says why."""


def parse_options(spec: str) -> tuple[set[str], bool]:
    """mount(8)-style ``a,b=c`` into FUSE options and the read-only flag."""
    fuse = set(pyfuse3.default_options)
    read_only = False
    for option in filter(None, (o.strip() for o in spec.split(","))):
        if option == "ro":
            read_only = True
        elif option in IGNORED_OPTIONS:
            continue
        elif option in FUSE_FLAGS or option.startswith(FUSE_VALUES):
            fuse.add(option)
        else:
            raise MountError(f"unknown mount option {option!r}")
    if read_only:
        fuse.add("ro")
    return fuse, read_only


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape").encode("latin-1").decode()


def is_mounted(mountpoint: str) -> bool:
    """True for any mount at ``mountpoint``, a crashed FUSE mount included (which
    ``os.path.ismount`` does not see)."""
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mountinfo") as info:
        return any(_unescape(line.split()[4]) == target for line in info)


async def serve(
    driver: StorageDriver,
    mountpoint: str,
    fuse_options: set[str],
    read_only: bool,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    """Mount, serve until unmounted or signalled, then close uploads and unmount."""
    options = {"fsname=layerfs", "subtype=layerfs", *fuse_options}
    async with trio.open_nursery() as background:
        ops = Operations(driver, background, read_only=read_only)
        try:
            pyfuse3.init(ops, mountpoint, options)
        except RuntimeError as exc:
            raise MountError(f"cannot mount {mountpoint}: {exc}") from None
        where = getattr(driver, "root", driver.name)
        log.info("mounted %s at %s%s", where, mountpoint, " read-only" if read_only else "")
        try:
            on_ready()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_on_signal)
                await pyfuse3.main()
                nursery.cancel_scope.cancel()
        finally:
            await ops.close_uploads()
            pyfuse3.close(unmount=True)
            await driver.aclose()
            log.info("unmounted %s", mountpoint)


async def _stop_on_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return
