"""``layerfs``: mount, umount and status of a registry store."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import trio

from . import __version__
from .drivers import driver_from_url

DEFAULT_STORE = "/var/lib/docker-registry"  # Debian docker-registry's rootdirectory
DEFAULT_MOUNTPOINT = "/mnt/layerfs"
LOG_LEVELS = ["debug", "info", "warning", "error"]


@click.group()
@click.version_option(__version__, prog_name="layerfs")
def cli() -> None:
    """Mount a container registry's storage as a directory."""


def _default_log_file(mountpoint: str) -> str:
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "layerfs"
    if os.geteuid() == 0:
        base = Path("/var/log/layerfs")
    name = os.path.realpath(mountpoint).strip("/").replace("/", "-") or "root"
    return str(base / f"{name}.log")


def _open_store(store: str, s3: dict | None = None):  # type: ignore[no-untyped-def]
    """The driver for a STORE argument; a store that cannot be opened is a usage error."""
    try:
        return driver_from_url(store, s3)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _setup_logging(level: str, log_file: str | None) -> None:
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
    from .config import ConfigError, store_from_config
    from .fs.mount import MountError, is_mounted, parse_options, serve

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
        driver = _open_store(store, mount_options.s3)
    os.makedirs(mountpoint, exist_ok=True)
    if is_mounted(mountpoint):
        raise click.ClickException(f"{mountpoint} is already mounted")

    def run(on_ready) -> None:  # type: ignore[no-untyped-def]
        trio.run(serve, driver, mountpoint, mount_options, on_ready)

    if foreground:
        _setup_logging(log_level, log_file)
        try:
            run(lambda: None)
        except MountError as exc:
            raise click.ClickException(str(exc)) from None
        return
    _daemonize(run, log_level, log_file or _default_log_file(mountpoint))


def _daemonize(run, log_level: str, log_file: str) -> None:  # type: ignore[no-untyped-def]
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
    _setup_logging(log_level, log_file)
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
            f"{_human(u['rate'])+'/s':>12} {u['age']:>7.0f}s"
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


@cli.command("purge-uploads")
@click.option("--older-than", default="168h", show_default=True, help="Age, as 1h30m.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted, delete nothing.")
@click.argument("store")
def purge_uploads_command(store: str, older_than: str, dry_run: bool) -> None:
    """Delete uploads of STORE started longer ago than --older-than."""
    from .storage import Registry
    from .storage.maintenance import parse_duration, purge_interrupted_copies, purge_uploads

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _setup_logging("warning", None)
    registry = Registry(_open_store(store))

    async def purge() -> tuple[list, list]:
        doomed = await purge_uploads(registry, age, dry_run)
        return doomed, await purge_interrupted_copies(registry, age, dry_run)

    doomed, copies = trio.run(purge)
    verb = "would delete" if dry_run else "deleted"
    for upload in doomed:
        click.echo(
            f"{verb} {upload.repository} {upload.upload_id} started "
            f"{upload.started_at:%Y-%m-%dT%H:%M:%SZ} ({upload.dated_by})"
        )
    for copy in copies:
        click.echo(
            f"{'would abort' if dry_run else 'aborted'} an interrupted copy into {copy.path} "
            f"begun {copy.started:%Y-%m-%dT%H:%M:%SZ}"
        )
    if not doomed and not copies:
        click.echo("no uploads to delete")
    else:
        summary = f"{len(doomed)} uploads {'to delete' if dry_run else 'deleted'}"
        if copies:
            summary += f", {len(copies)} interrupted copies {'to abort' if dry_run else 'aborted'}"
        click.echo(summary)


# fsck exit statuses, as e2fsck's: clean, everything found was repaired, some left
FSCK_CLEAN, FSCK_REPAIRED, FSCK_UNREPAIRED, FSCK_FAILED = 0, 1, 4, 8


@cli.command()
@click.option("--repair", is_flag=True, help="Remove what is provably broken; list it.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option(
    "--workers", default=os.cpu_count() or 2, show_default=True, help="Blobs hashed at once."
)
@click.argument("store")
def fsck(store: str, repair: bool, as_json: bool, workers: int) -> None:
    """Check every blob, link, manifest and upload of STORE.

    Exit status: 0 clean, 1 all findings repaired, 4 findings left, 8 check failed."""
    from .drivers import StorageDriverError
    from .storage.fsck import REGISTRY_STATES
    from .storage.fsck import fsck as run_fsck

    _setup_logging("error", None)
    bar = _progress_bar(enabled=not as_json)
    try:
        report = trio.run(
            run_fsck, _open_store(store), repair, workers, bar.update, _set_total(bar)
        )
    except StorageDriverError as exc:
        bar.close()
        click.echo(f"fsck failed: {exc}", err=True)
        sys.exit(FSCK_FAILED)
    bar.close()
    if as_json:
        summary = {
            "clean": report.clean,
            "checked": {
                "blobs": report.blobs, "bytes": report.blob_bytes, "repositories":
                report.repositories, "manifests": report.manifests, "links": report.links,
                "uploads": report.uploads,
            },
            "registry_states": dict(report.registry_states),
            "findings": [f.as_dict() for f in report.findings],
        }  # fmt: skip
        click.echo(json.dumps(summary, indent=2))
    else:
        for finding in report.findings:
            click.echo(f"{finding.kind}: {finding.path}: {finding.detail}")
            if finding.removed:
                click.echo(f"  {'completed' if finding.fix else 'removed'} {finding.remove}")
        for state, count in sorted(report.registry_states.items()):
            click.echo(f"normal: {count} {REGISTRY_STATES[state]}")
        click.echo(
            f"checked {report.blobs} blobs ({_human(report.blob_bytes)}), {report.repositories}"
            f" repositories, {report.manifests} manifests, {report.links} links,"
            f" {report.uploads} uploads: {len(report.findings)} problems"
            + (f", {len(report.findings) - len(report.unrepaired)} repaired" if repair else "")
        )
    if report.clean:
        sys.exit(FSCK_CLEAN)
    sys.exit(FSCK_UNREPAIRED if report.unrepaired else FSCK_REPAIRED)


def _progress_bar(enabled: bool):  # type: ignore[no-untyped-def]
    """Bytes/s and ETA on a terminal (stderr); nothing otherwise."""
    from tqdm import tqdm

    return tqdm(
        total=0, unit="B", unit_scale=True, unit_divisor=1024, desc="fsck",
        disable=None if enabled else True, leave=False,
    )  # fmt: skip


def _set_total(bar):  # type: ignore[no-untyped-def]
    def set_total(total: int) -> None:
        bar.total = total
        bar.refresh()

    return set_total


@cli.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted, delete nothing.")
@click.option("--delete-untagged", is_flag=True, help="Also delete manifests no tag names.")
@click.option("--grace", default="1h", show_default=True, help="Keep anything younger (1h30m).")
@click.option("--force", is_flag=True, help="Run even while a read-write mount serves STORE.")
@click.argument("store")
def gc(store: str, dry_run: bool, delete_untagged: bool, grace: str, force: bool) -> None:
    """Delete the blobs of STORE that no manifest references (mark and sweep)."""
    from .fs.mount import writable_mounts_of
    from .storage.gc import GarbageCollector
    from .storage.maintenance import parse_duration

    try:
        grace_period = parse_duration(grace)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    driver = _open_store(store)
    mounts = writable_mounts_of(driver.location)
    if mounts and not force and not dry_run:
        raise click.ClickException(
            f"{store} is mounted read-write at {', '.join(mounts)}; "
            "unmount it, remount it read-only, or pass --force"
        )
    _setup_logging("warning", None)
    result = trio.run(GarbageCollector(driver, delete_untagged, grace_period, dry_run).run)
    if not result.complete:
        for what in result.unreadable:
            click.echo(f"unreadable manifest {what}", err=True)
        raise click.ClickException(
            f"{'would delete' if dry_run else 'deleted'} nothing: {len(result.unreadable)}"
            " manifests could not be read, so what they reference is unknown"
            " (layerfs fsck tells more)"
        )
    verb = "would delete" if dry_run else "deleted"
    for deletion in result.deleted:
        click.echo(f"{verb} {deletion}")
    for kept in result.kept_young:
        click.echo(f"kept {kept} (younger than {grace})")
    kinds = [d.kind for d in result.deleted]
    click.echo(
        f"{len(result.marked)} blobs marked; {verb} {kinds.count('blob')} blobs,"
        f" {kinds.count('manifest')} manifests, {kinds.count('layer-link')} layer links"
    )


def _credentials(creds: str | None) -> tuple[str, str] | None:
    if creds is None:
        return None
    user, sep, password = creds.partition(":")
    if not sep:
        raise click.UsageError("--creds wants USER:PASSWORD")
    return user, password


def _repo_and_tag(text: str) -> tuple[str, str]:
    repository, sep, tag = text.rpartition(":")
    if not sep or "/" in tag:
        return text, "latest"
    return repository, tag


def _transfer_options(command):  # type: ignore[no-untyped-def]
    for option in reversed([
        click.option("--creds", help="USER:PASSWORD for the registry, if it asks."),
        click.option("--jobs", default=4, show_default=True, help="Blobs transferred at once."),
        click.option("--retries", default=5, show_default=True, help="Attempts after a failure."),
    ]):  # fmt: skip
        command = option(command)
    return command


@cli.command("import")
@_transfer_options
@click.argument("source")
@click.argument("store")
@click.argument("reference")
def import_command(
    source: str, store: str, reference: str, creds: str | None, jobs: int, retries: int
) -> None:
    """Copy an image from SOURCE (oci:DIR[:TAG], docker-archive:FILE, docker://HOST/REPO:TAG)
    into STORE as REPO[:TAG]; an interrupted import continues where it stopped."""
    from .images import open_source
    from .images.copy import Importer
    from .images.transfer import TransferManager
    from .storage import Registry, validate_name, validate_tag

    repository, tag = _repo_and_tag(reference)
    validate_name(repository)
    validate_tag(tag)
    _setup_logging("warning", None)
    display = TransferDisplay()
    registry = Registry(_open_store(store))  # a local store's directory is made here

    async def run() -> object:
        image = await trio.to_thread.run_sync(open_source, source, _credentials(creds))
        transfers = TransferManager(jobs, retries, progress=display.event)
        try:
            return await Importer(image, registry, repository, transfers).run(tag)
        finally:
            await trio.to_thread.run_sync(image.close)

    digest = _run_transfer(run, display)
    click.echo(f"{repository}:{tag}: digest: {digest}")


@cli.command("export")
@_transfer_options
@click.argument("store")
@click.argument("reference")
@click.argument("dest")
def export_command(
    store: str, reference: str, dest: str, creds: str | None, jobs: int, retries: int
) -> None:
    """Copy REPO:TAG out of STORE to DEST (oci:DIR[:TAG], docker-archive:FILE, a .tar
    file, docker://HOST/REPO[:TAG], or a directory for an OCI layout)."""
    from .images import open_destination
    from .images.copy import Exporter
    from .images.transfer import TransferManager
    from .storage import Registry

    repository, tag = _repo_and_tag(reference)
    _setup_logging("warning", None)
    display = TransferDisplay()
    registry = Registry(_open_store(store))

    async def run() -> object:
        destination, dest_tag = await trio.to_thread.run_sync(
            open_destination, dest, f"{repository}:{tag}", _credentials(creds)
        )
        transfers = TransferManager(
            jobs if destination.parallel else 1, retries, progress=display.event
        )
        try:
            return await Exporter(registry, repository, destination, transfers).run(tag, dest_tag)
        finally:
            await trio.to_thread.run_sync(destination.close)

    digest = _run_transfer(run, display)
    click.echo(f"{repository}:{tag}: digest: {digest}")


def _run_transfer(run, display: TransferDisplay) -> object:  # type: ignore[no-untyped-def]
    from .images.errors import RegistryHTTPError, TransientError
    from .images.sources import SourceError
    from .storage import RegistryError

    expected = (SourceError, TransientError, RegistryHTTPError, RegistryError, OSError)
    try:
        return trio.run(run)
    except BaseException as exc:
        leaf = _first_leaf(exc)
        if isinstance(leaf, KeyboardInterrupt):
            click.echo("interrupted: finished blobs are stored; run again to continue", err=True)
            sys.exit(130)
        if isinstance(leaf, expected):
            raise click.ClickException(str(leaf)) from None
        raise
    finally:
        display.close()


def _first_leaf(exc: BaseException) -> BaseException:
    """The first error inside the exception groups trio's nurseries raise."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class TransferDisplay:
    """``docker pull``'s view: a bar per blob on a terminal, a line per outcome otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.bars: dict[str, object] = {}

    def event(self, event) -> None:  # type: ignore[no-untyped-def]
        short = event.key.split(":", 1)[-1][:12]
        if not self.tty:
            if event.status in ("Already exists", "Complete", "Retrying", "Failed"):
                detail = f" {event.detail}" if event.detail else ""
                click.echo(f"{short}: {event.status}{detail}", err=True)
            return
        from tqdm import tqdm

        bar = self.bars.get(event.key)
        if bar is None:
            bar = self.bars[event.key] = tqdm(
                total=event.total, unit="B", unit_scale=True, unit_divisor=1024, desc=short,
                position=len(self.bars), leave=True,
            )  # fmt: skip
        bar.set_postfix_str(event.status + (f" {event.detail}" if event.detail else ""))  # type: ignore[attr-defined]
        bar.n = event.done  # type: ignore[attr-defined]
        bar.refresh()  # type: ignore[attr-defined]

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()  # type: ignore[attr-defined]
        self.bars.clear()


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def main() -> None:
    """Entry point; ``layerfs STORE MOUNTPOINT -o opts`` (as mount.fuse3 calls it from
    an fstab line) means ``layerfs mount``."""
    args = sys.argv[1:]
    if args and not args[0].startswith("-") and args[0] not in cli.commands:
        args = ["mount", *args]
    cli.main(args=args, prog_name="layerfs")
