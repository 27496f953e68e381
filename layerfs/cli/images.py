"""``layerfs import`` and ``export``: whole images between a store and a registry,
an OCI layout or a docker-archive tarball."""

from __future__ import annotations

import sys

import click
import trio

from .common import cli, open_store, setup_logging


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
    from ..images import open_source
    from ..images.copy import Importer
    from ..images.transfer import TransferManager
    from ..storage import Registry, validate_name, validate_tag

    repository, tag = _repo_and_tag(reference)
    validate_name(repository)
    validate_tag(tag)
    setup_logging("warning", None)
    display = TransferDisplay()
    registry = Registry(open_store(store))  # a local store's directory is made here

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
    from ..images import open_destination
    from ..images.copy import Exporter
    from ..images.transfer import TransferManager
    from ..storage import Registry

    repository, tag = _repo_and_tag(reference)
    setup_logging("warning", None)
    display = TransferDisplay()
    registry = Registry(open_store(store, existing=True))

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
    from ..images.errors import RegistryHTTPError, TransientError
    from ..images.sources import SourceError
    from ..storage import RegistryError

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
