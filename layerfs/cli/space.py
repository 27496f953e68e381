"""``layerfs du`` and ``layerfs prune``: where a store's space goes, and retention."""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import datetime

import click
import trio

from .common import cli, open_store, plural, progress_bar, setup_logging, store_of

USAGE_ERROR = 2
UPLOADS_SHOWN = 10  # the oldest uploads listed by name in the text output


def du_size(n: int, exact: bool = False) -> str:
    """A size as ``du -h`` prints it (rounded up; K, M, G, T, P of 1024), so that
    ``sort -h`` orders it; ``exact``: the bytes."""
    if exact or n < 1024:
        return str(n)
    value = float(n)
    for unit in "KMGTP":
        value /= 1024
        if value < 1024 or unit == "P":
            break
    if value < 10:
        return f"{math.ceil(value * 10) / 10:.1f}{unit}"
    return f"{math.ceil(value)}{unit}"


def age_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _fail(message: str) -> None:
    click.echo(f"layerfs: {message}", err=True)
    sys.exit(USAGE_ERROR)


# du ------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--by", type=click.Choice(["repo", "tag", "manifest"]), default="repo", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("-b", "--bytes", "exact", is_flag=True, help="Sizes in bytes.")
@click.argument("store")
@click.argument("only", nargs=-1, metavar="[REPO[:TAG]]...")
def du(store: str, by: str, as_json: bool, exact: bool, only: tuple[str, ...]) -> None:
    """Where the space of STORE (or of the store a mount point serves) goes.

    One row per repository (or tag, or manifest): the bytes it references, those
    no other row references (deleting it would free them), those it shares, and its
    blobs; then the whole store split into tagged images, untagged manifests,
    unreferenced blobs, uploads and odd entries."""
    from ..passes.usage import Usage, read_store

    setup_logging("error", None)
    driver = open_store(store_of(store), existing=True)
    bar = progress_bar("du", not as_json, unit="repo")
    facts = trio.run(read_store, driver, _advance(bar))
    bar.close()
    usage = Usage(facts)
    rows = usage.rows(by)
    if only:
        rows = _only(rows, only, facts, by)
    if as_json:
        click.echo(json.dumps(_du_json(usage, rows, by), indent=2))
    else:
        _print_du(usage, rows, by, exact)


def _only(rows, only, facts, by):  # type: ignore[no-untyped-def]
    wanted = []
    for item in only:
        name, _, tag = item.partition(":")
        repo = facts.repositories.get(name)
        if repo is None:
            _fail(f"no repository {name} in the store")
        if tag and tag not in {t.name for t in repo.tags}:
            _fail(f"no tag {tag} in {name}")
        wanted.append((name, tag))
    return [
        r
        for r in rows
        if any(r.repository == n and (not t or by != "tag" or r.tag == t) for n, t in wanted)
    ]


def _row_name(row, by: str) -> str:  # type: ignore[no-untyped-def]
    if by == "tag":
        return f"{row.repository}:{row.tag}"
    if by == "manifest":
        return f"{row.repository}@{row.manifest}"
    return row.repository


def _print_du(usage, rows, by: str, exact: bool) -> None:  # type: ignore[no-untyped-def]
    size = lambda n: du_size(n, exact)  # noqa: E731
    heading = {"repo": "REPOSITORY", "tag": "TAG", "manifest": "MANIFEST"}[by]
    click.echo(f"{'REFERENCED':>10} {'UNIQUE':>8} {'SHARED':>8} {'BLOBS':>6}  {heading}")
    for row in rows:
        click.echo(
            f"{size(row.referenced.bytes):>10} {size(row.unique.bytes):>8}"
            f" {size(row.shared.bytes):>8} {row.referenced.blobs:>6}  {_row_name(row, by)}"
        )
    summary = usage.summary()
    facts = usage.facts
    odd = usage.odd()
    click.echo("")
    click.echo(
        f"store: {size(summary.total_bytes)} in {plural(summary.blobs.blobs, 'blob')} and"
        f" {plural(summary.uploads.blobs, 'upload')},"
        f" {plural(len(facts.repositories), 'repository', 'repositories')}"
    )
    parts = [
        (summary.tagged, "tagged images", ""),
        (summary.untagged, "untagged manifests only", "freed by gc --delete-untagged"),
        (summary.unreferenced, "unreferenced", "freed by gc"),
    ]
    for part, what, freed in parts:
        blobs = plural(part.blobs, "blob")
        click.echo(f"{size(part.bytes):>10}  {what} ({blobs}){': ' + freed if freed else ''}")
    uploads = summary.uploads
    click.echo(f"{size(uploads.bytes):>10}  uploads ({uploads.blobs}): freed by purge-uploads")
    now = facts.read_at
    oldest = sorted(facts.uploads, key=lambda u: (u.started_at or now, u.upload_id))
    for upload in oldest[:UPLOADS_SHOWN]:
        click.echo(f"{size(upload.size):>10}    {upload.repository} {upload.upload_id}"
                   f" {_started(upload.started_at, now)}")  # fmt: skip
    if len(oldest) > UPLOADS_SHOWN:
        click.echo(f"{'':>10}    and {len(oldest) - UPLOADS_SHOWN} younger (--json lists all)")
    click.echo(f"{len(odd):>10}  odd entries (layerfs fsck tells more)")
    for path, why in odd:
        click.echo(f"{'':>10}    {path}: {why}")


def _started(started: datetime | None, now: datetime) -> str:
    if started is None:
        return "(start unknown)"
    return f"started {started:%Y-%m-%dT%H:%M:%SZ}, {age_text((now - started).total_seconds())} ago"


def _part(part) -> dict:  # type: ignore[no-untyped-def]
    return {"bytes": part.bytes, "blobs": part.blobs}


def _du_json(usage, rows, by: str) -> dict:  # type: ignore[no-untyped-def]
    summary = usage.summary()
    now = usage.facts.read_at
    return {
        "by": by,
        "rows": [
            {
                "repository": r.repository,
                **({"tag": r.tag} if by == "tag" else {}),
                **({"manifest": str(r.manifest)} if by == "manifest" else {}),
                "referenced": _part(r.referenced),
                "unique": _part(r.unique),
                "shared": _part(r.shared),
            }
            for r in rows
        ],
        "summary": {
            "total_bytes": summary.total_bytes,
            "blobs": _part(summary.blobs),
            "tagged": _part(summary.tagged),
            "untagged": _part(summary.untagged),
            "unreferenced": _part(summary.unreferenced),
            "uploads": {
                "bytes": summary.uploads.bytes,
                "count": summary.uploads.blobs,
                "items": [
                    {
                        "repository": u.repository,
                        "id": u.upload_id,
                        "bytes": u.size,
                        "started_at": u.started_at.isoformat() if u.started_at else None,
                        "age_seconds": (now - u.started_at).total_seconds()
                        if u.started_at
                        else None,
                    }
                    for u in usage.facts.uploads
                ],
            },
            "odd": [{"path": p, "why": w} for p, w in usage.odd()],
        },
    }


def _advance(bar):  # type: ignore[no-untyped-def]
    """read_store's progress (repositories read, of how many) on ``bar``."""

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update


# prune ---------------------------------------------------------------------------
@cli.command()
@click.option("--keep-last", type=int, help="Keep the newest N tags of each repository.")
@click.option("--older-than", help="Delete only tags older than this (30d, 12h, 1h30m).")
@click.option("--keep-tags", help="Never delete a tag this regular expression matches whole.")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted, delete nothing.")
@click.option("--yes", is_flag=True, help="Delete without asking (needed off a terminal).")
@click.argument("store")
@click.argument("pattern", metavar="REPO-PATTERN")
def prune(
    store: str,
    pattern: str,
    keep_last: int | None,
    older_than: str | None,
    keep_tags: str | None,
    dry_run: bool,
    yes: bool,
) -> None:
    """Delete tags of the repositories REPO-PATTERN (a shell glob) matches, by
    policy, then the manifests no remaining tag or index needs; run gc afterwards
    to free their blobs. A tag's age is its current link's modification time."""
    from ..passes.prune import NoMatchError, Policy, apply_prune, plan_prune
    from ..storage.maintenance import parse_duration

    try:
        policy = Policy(
            keep_last,
            parse_duration(older_than) if older_than is not None else None,
            re.compile(keep_tags) if keep_tags is not None else None,
        )
    except re.error as exc:
        _fail(f"--keep-tags {keep_tags!r} is no regular expression: {exc}")
    except ValueError as exc:
        _fail(str(exc))
    setup_logging("warning", None)
    driver = open_store(store_of(store), existing=True)
    try:
        plan = trio.run(plan_prune, driver, pattern, policy)
    except NoMatchError as exc:
        _fail(str(exc))
    if plan.unreadable:
        for what in plan.unreadable:
            click.echo(f"unreadable: {what}", err=True)
        raise click.ClickException(
            f"deleted nothing: {len(plan.unreadable)} tags or manifests could not be read"
        )
    verb = "would delete" if dry_run or not yes else "deleting"
    for repo in plan.repositories:
        for tag in repo.tags:
            when = f"{tag.mod_time:%Y-%m-%dT%H:%M:%SZ}" if tag.mod_time else "unknown age"
            click.echo(f"{verb} tag {repo.name}:{tag.name} ({when}, {tag.target})")
        for digest in repo.manifests:
            click.echo(f"{verb} manifest {repo.name}@{digest}")
    counts = f"{plural(plan.tags, 'tag')} and {plural(plan.manifests, 'manifest')}"
    if not plan.tags and not plan.manifests:
        click.echo("nothing to prune")
        return
    if dry_run:
        where = plural(len(plan.repositories), "repository", "repositories")
        click.echo(f"{counts} to delete in {where}")
        return
    if not yes:
        if not sys.stdin.isatty():
            _fail("prune deletes only with --yes when its input is not a terminal")
        if not click.confirm(f"delete {counts}?"):
            click.echo("nothing deleted")
            return
    kept = trio.run(apply_prune, driver, plan)
    for what in kept:
        click.echo(f"kept {what}")
    click.echo(f"deleted {counts}" + (f" ({len(kept)} kept)" if kept else ""))
    click.echo("run layerfs gc to free the blobs they alone referenced")
