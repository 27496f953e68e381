"""Running the mount: options, the trio main loop, signals and a clean unmount."""

from __future__ import annotations

import functools
import logging
import os
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pyfuse3
import trio

from ..storage.errors import StorageDriverError
from ..storage.maintenance import (
    complete_interrupted_finishes,
    parse_duration,
    purge_interrupted_copies,
    purge_uploads,
)
from ..storage.store import Store
from .inodes import InodeTable
from .operations import Operations
from .view import Parts

log = logging.getLogger("layerfs.mount")

# mount(8) options that mean nothing to a FUSE daemon (fstab passes them along)
IGNORED_OPTIONS = {
    "rw", "defaults", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "auto", "noauto",
    "nofail", "_netdev", "user", "users", "nouser", "async", "atime", "noatime", "relatime",
}  # fmt: skip
FUSE_FLAGS = {"allow_other", "allow_root", "default_permissions", "auto_unmount"}
FUSE_VALUES = ("fsname=", "subtype=", "max_read=")
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
STOP_GRACE = 10.0  # seconds a request may still run after SIGTERM


class MountError(Exception):
    """A mount that cannot start; the message says why."""


@dataclass
class MountOptions:
    fuse: set[str]
    read_only: bool = False
    purge_uploads: timedelta | None = None  # delete uploads older than this, periodically
    # an s3:// store's endpoint, region, profile (credentials) and part_size, as the
    # S3 driver's keyword arguments; unset ones come from the AWS environment and files
    s3: dict[str, Any] = field(default_factory=dict)


def parse_size(text: str) -> int:
    """Bytes from ``16777216``, ``16M``, ``16MiB`` or ``16m`` (binary units)."""
    number = text.rstrip("BbIi")
    digits = number.rstrip("KkMmGg")
    unit = number[len(digits) :].lower()
    if not digits.isdigit() or unit not in SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (bytes, or a number with K, M or G)")
    return int(digits) * SIZE_UNITS[unit]


def parse_seconds(text: str) -> float:
    """``30``, ``2.5`` or a duration such as ``1m30s``."""
    try:
        return float(text)
    except ValueError:
        return parse_duration(text).total_seconds()


S3_OPTIONS = {
    "endpoint": str,
    "region": str,
    "profile": str,
    "part_size": parse_size,
    "timeout": parse_seconds,
}


def parse_options(spec: str) -> MountOptions:
    """mount(8)-style ``a,b=c``: FUSE options, ``ro``, ``purge_uploads=168h`` and an
    s3:// store's ``endpoint=``, ``region=``, ``profile=``, ``part_size=`` and
    ``timeout=`` (seconds one request may take, retries included)."""
    parsed = MountOptions(set(pyfuse3.default_options))
    for option in filter(None, (o.strip() for o in spec.split(","))):
        key, _, value = option.partition("=")
        if option == "ro":
            parsed.read_only = True
        elif key == "purge_uploads" or key in S3_OPTIONS:
            try:
                if not value:
                    raise ValueError("it needs a value")
                if key == "purge_uploads":
                    parsed.purge_uploads = parse_duration(value)
                else:
                    parsed.s3[key] = S3_OPTIONS[key](value)
            except ValueError as exc:
                raise MountError(f"mount option {option!r}: {exc}") from None
        elif option in IGNORED_OPTIONS:
            continue
        elif option in FUSE_FLAGS or option.startswith(FUSE_VALUES):
            parsed.fuse.add(option)
        else:
            raise MountError(f"unknown mount option {option!r}")
    if parsed.read_only:
        parsed.fuse.add("ro")
    return parsed


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape").encode("latin-1").decode()


def is_mounted(mountpoint: str) -> bool:
    """True for any mount at ``mountpoint``, a crashed FUSE mount included (which
    ``os.path.ismount`` does not see)."""
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mountinfo") as info:
        return any(_unescape(line.split()[4]) == target for line in info)


def _forget_entry(inodes: InodeTable, parts: Parts) -> None:
    """Have the kernel drop its entry of ``parts`` now (it may hold it for its
    timeout): queued, so a handler may call it."""
    parent = inodes.known(parts[:-1])
    if parent is not None:
        name = parts[-1].encode("utf-8", "surrogateescape")
        pyfuse3.invalidate_entry_async(parent, name, ignore_enoent=True)


def writable_mounts_of(store_root: str) -> list[str]:
    """Mount points of read-write layerfs mounts on this machine serving ``store_root``
    (as their root's ``user.layerfs.store`` names it)."""
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            fields, _, tail = line.partition(" - ")
            parts = fields.split()
            if not tail.startswith("fuse.layerfs ") or "rw" not in parts[5].split(","):
                continue
            mountpoint = _unescape(parts[4])
            try:
                served = os.getxattr(mountpoint, "user.layerfs.store").decode()
            except OSError:
                continue
            if _same_store(served, store_root):
                found.append(mountpoint)
    return found


def _same_store(served: str, store: str) -> bool:
    """One store named two ways (through a symbolic link, a bind mount, another
    spelling): the same directory, by device and inode."""
    if "://" in served or "://" in store:
        return served.rstrip("/") == store.rstrip("/")
    try:
        mine, theirs = os.stat(served), os.stat(store)
    except OSError:
        return os.path.realpath(served) == os.path.realpath(store)
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


FUSE_DEVICE = "/dev/fuse"


def fuse_device_problem(device: str = FUSE_DEVICE) -> str | None:
    """Why this user cannot mount through ``device``, in one sentence; None if it can."""
    try:
        os.close(os.open(device, os.O_RDWR | os.O_CLOEXEC))
    except FileNotFoundError:
        return (
            f"cannot mount: {device} does not exist; load the fuse module (modprobe fuse)"
            " or, in a container, pass the device in (--device /dev/fuse)"
        )
    except PermissionError:
        mode = stat.filemode(os.stat(device).st_mode)
        return (
            f"cannot mount: {device} ({mode}) cannot be opened by this user; mount as root,"
            f" or let this user read and write {device} (Debian makes it crw-rw-rw-)"
        )
    except OSError as exc:
        return f"cannot mount: {device}: {exc.strerror}"
    return None


async def serve(
    store: Store,
    mountpoint: str,
    mount_options: MountOptions,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    """Mount, serve until unmounted or signalled, then close uploads and unmount."""
    try:
        await _serve(store, mountpoint, mount_options, on_ready)
    except BaseExceptionGroup as group:  # the nursery's: say the reason, not the group
        refused = group.subgroup(MountError)
        if refused is None or group.split(MountError)[1] is not None:
            raise
        raise refused.exceptions[0] from None


async def _serve(
    store: Store,
    mountpoint: str,
    mount_options: MountOptions,
    on_ready: Callable[[], None],
) -> None:
    options = {"fsname=layerfs", "subtype=layerfs", *mount_options.fuse}
    read_only = mount_options.read_only
    async with trio.open_nursery() as background:
        ops = Operations(store, background, read_only=read_only)
        ops.state.forget_entry = functools.partial(_forget_entry, ops.state.inodes)
        try:
            pyfuse3.init(ops, mountpoint, options)
        except RuntimeError as exc:
            raise MountError(f"cannot mount {mountpoint}: {exc}") from None
        where = store.location
        log.info("mounted %s at %s%s", where, mountpoint, " read-only" if read_only else "")
        try:
            on_ready()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
                if not read_only:
                    nursery.start_soon(_complete_interrupted_finishes, ops)
                if mount_options.purge_uploads is not None and not read_only:
                    nursery.start_soon(_purge_periodically, ops, mount_options.purge_uploads)
                await pyfuse3.main()
                nursery.cancel_scope.cancel()
        finally:
            await ops.close_uploads()
            pyfuse3.close(unmount=True)
            await store.aclose()
            log.info("unmounted %s", mountpoint)


async def _complete_interrupted_finishes(ops: Operations) -> None:
    """At start, finish what finishes cut short between move and link left undone."""
    try:
        done = await complete_interrupted_finishes(ops.registry, ops.state.uploads.claimed)
    except StorageDriverError as exc:  # the store failing: a known event, one line
        log.error("looking for finishes cut short failed (%s); fsck --repair completes them", exc)
        return
    except Exception:
        log.exception("looking for finishes cut short failed; fsck --repair completes them")
        return
    for finish in done:
        log.info("completed the finish of upload %s of %s", finish.upload_id, finish.repository)


async def _purge_periodically(ops: Operations, older_than: timedelta) -> None:
    """Delete abandoned uploads now and then; never one this mount has open."""
    interval = min(max(older_than.total_seconds() / 4, 1.0), 3600.0)
    while True:
        try:
            purged = await purge_uploads(ops.registry, older_than, claim=ops.state.uploads.claimed)
            if purged:
                log.info("purged %d uploads older than %s", len(purged), older_than)
            await purge_interrupted_copies(ops.registry, older_than)
        except StorageDriverError as exc:
            log.error("purging uploads failed (%s); trying again in %.0f s", exc, interval)
        except Exception:
            log.exception("purging uploads failed; trying again in %.0f s", interval)
        await trio.sleep(interval)


async def _stop_on_signal(serving: trio.CancelScope) -> None:
    """Stop serving on a signal. pyfuse3's main loop returns once every request in
    flight has been answered; one that is not within STOP_GRACE seconds (a store that
    does not answer, a kernel connection that was aborted) is cancelled, so that the
    daemon always ends: uploads are then closed and the mount taken down."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            break
    await trio.sleep(STOP_GRACE)
    log.warning("requests still open %.0f s after the signal: cancelling them", STOP_GRACE)
    serving.cancel()
