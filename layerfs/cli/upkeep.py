"""``layerfs purge-uploads``, ``fsck`` and ``gc``: upkeep of a store."""

from __future__ import annotations

import functools
import json
import os
import sys

import click
import trio

from .common import cli, human, open_store, progress_bar, setup_logging


@cli.command("purge-uploads")
@click.option("--older-than", default="168h", show_default=True, help="Age, as 1h30m.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted, delete nothing.")
@click.argument("store")
def purge_uploads_command(store: str, older_than: str, dry_run: bool) -> None:
    """Delete uploads of STORE started longer ago than --older-than."""
    from ..storage import Registry
    from ..storage.maintenance import parse_duration, purge_interrupted_copies, purge_uploads

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    setup_logging("warning", None)
    registry = Registry(open_store(store, existing=True))

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
@click.option(
    "--grace",
    default="1h",
    show_default=True,
    help="Repair nothing that changed more recently (a writer may be mid-write).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option(
    "--workers", default=os.cpu_count() or 2, show_default=True, help="Blobs hashed at once."
)
@click.option(
    "--no-data",
    is_flag=True,
    help="Do not hash the blobs: a blob with data counts as intact (a quick check).",
)
@click.argument("store")
def fsck(store: str, repair: bool, grace: str, as_json: bool, workers: int, no_data: bool) -> None:
    """Check every blob, link, manifest and upload of STORE.

    Exit status: 0 clean, 1 all findings repaired, 4 findings left, 8 check failed."""
    from ..drivers import StorageDriverError
    from ..passes.fsck import REGISTRY_STATES
    from ..passes.fsck import fsck as run_fsck
    from ..storage.maintenance import parse_duration

    try:
        grace_period = parse_duration(grace)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    setup_logging("error", None)
    driver = open_store(store, existing=True)
    bar = progress_bar("fsck", not as_json, unit="B", unit_scale=True, unit_divisor=1024)
    try:
        check = functools.partial(
            run_fsck, driver, repair=repair, workers=workers, progress=bar.update,
            on_total=_set_total(bar), check_data=not no_data, grace=grace_period,
        )  # fmt: skip
        report = trio.run(check)
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
            elif repair and finding.kept:
                click.echo(f"  kept {finding.remove}: {finding.kept}")
        for state, count in sorted(report.registry_states.items()):
            click.echo(f"normal: {count} {REGISTRY_STATES[state]}")
        click.echo(
            f"checked {report.blobs} blobs ({human(report.blob_bytes)}), {report.repositories}"
            f" repositories, {report.manifests} manifests, {report.links} links,"
            f" {report.uploads} uploads: {len(report.findings)} problems"
            + (f", {len(report.findings) - len(report.unrepaired)} repaired" if repair else "")
        )
    if report.clean:
        sys.exit(FSCK_CLEAN)
    sys.exit(FSCK_UNREPAIRED if report.unrepaired else FSCK_REPAIRED)


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
@click.option("--json", "as_json", is_flag=True, help="Print what is freed as JSON.")
@click.argument("store")
def gc(
    store: str, dry_run: bool, delete_untagged: bool, grace: str, force: bool, as_json: bool
) -> None:
    """Delete the blobs of STORE that no manifest references (mark and sweep), and
    print what that frees per repository."""
    from ..fs.mount import writable_mounts_of
    from ..passes.gc import GarbageCollector
    from ..storage.maintenance import parse_duration

    try:
        grace_period = parse_duration(grace)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    driver = open_store(store, existing=True)
    mounts = writable_mounts_of(driver.location)
    if mounts and not force and not dry_run:
        raise click.ClickException(
            f"{store} is mounted read-write at {', '.join(mounts)}; "
            "unmount it, remount it read-only, or pass --force"
        )
    setup_logging("warning", None)
    result = trio.run(GarbageCollector(driver, delete_untagged, grace_period, dry_run).run)
    if as_json:
        click.echo(json.dumps(_gc_json(result, dry_run), indent=2))
    if not result.complete:
        for what in result.unreadable:
            click.echo(f"unreadable: {what}", err=True)
        raise click.ClickException(
            f"{'would delete' if dry_run else 'deleted'} nothing: {len(result.unreadable)}"
            " manifests or repositories could not be read, so what they reference is"
            " unknown (layerfs fsck tells more)"
        )
    if not as_json:
        _print_gc(result, dry_run, grace)


def _print_gc(result, dry_run: bool, grace: str) -> None:  # type: ignore[no-untyped-def]
    verb = "would delete" if dry_run else "deleted"
    for deletion in result.deleted:
        click.echo(f"{verb} {deletion}")
    for kept in result.kept_young:
        click.echo(f"kept {kept} (younger than {grace})")
    for skipped in result.skipped:
        click.echo(f"kept {skipped}")
    rows = [(name or "(no repository)", freed) for name, freed in result.by_repository().items()]
    if rows:
        width = max(len("REPOSITORY"), *(len(name) for name, _ in rows))
        heading = f"{'BYTES':>10} {'BLOBS':>6} {'MANIFESTS':>9} {'LAYER LINKS':>11}"
        click.echo(f"{'REPOSITORY':<{width}} {heading}")
        for name, freed in [*rows, ("total", result.total())]:
            click.echo(
                f"{name:<{width}} {human(freed.bytes):>10} {freed.blobs:>6}"
                f" {freed.manifests:>9} {freed.layer_links:>11}"
            )
    kinds = [d.kind for d in result.deleted]
    click.echo(
        f"{len(result.marked)} blobs marked; {verb} {kinds.count('blob')} blobs"
        f" ({human(result.total().bytes)}), {kinds.count('manifest')} manifests,"
        f" {kinds.count('layer-link')} layer links"
    )


def _gc_json(result, dry_run: bool) -> dict:  # type: ignore[no-untyped-def]
    def freed(f) -> dict:  # type: ignore[no-untyped-def]
        return {
            "bytes": f.bytes, "blobs": f.blobs, "manifests": f.manifests,
            "layer_links": f.layer_links,
        }  # fmt: skip

    def item(d) -> dict:  # type: ignore[no-untyped-def]
        return {
            "kind": d.kind,
            "digest": str(d.digest),
            "repository": d.repository,
            "bytes": d.size,
        }

    return {
        "dry_run": dry_run,
        "complete": result.complete,
        "marked": len(result.marked),
        "repositories": {name: freed(f) for name, f in result.by_repository().items()},
        "total": freed(result.total()),
        "deleted": [item(d) for d in result.deleted],
        "kept_young": [item(d) for d in result.kept_young],
        "skipped": list(result.skipped),
        "unreadable": list(result.unreadable),
    }
