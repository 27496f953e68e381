"""``layerfs inspect``: a tag's or a manifest's image, read from the store itself."""

from __future__ import annotations

import json
import platform as host
import sys

import click
import trio

from .common import cli, human, open_store, plural, setup_logging, store_of

NOT_FOUND = 1
# the host's machine name as OCI spells architectures
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


@cli.command()
@click.option("--raw", is_flag=True, help="Print the manifest's bytes as stored.")
@click.option("--config", "show_config", is_flag=True, help="Print the image's config.")
@click.option("--json", "as_json", is_flag=True, help="Print everything shown as JSON.")
@click.argument("store")
@click.argument("reference", metavar="REPO:TAG|REPO@DIGEST")
def inspect(store: str, reference: str, raw: bool, show_config: bool, as_json: bool) -> None:
    """Show the image a tag or digest names in STORE (or in the store a mount point
    serves): digest, media type, platforms of an index, layers with their sizes, the
    total size and the tag's history, as ``skopeo inspect`` would from a registry.
    ``--config`` of an index is the config of this machine's platform."""
    from ..passes.inspection import inspect as read
    from ..storage.errors import RegistryError

    if raw and show_config:
        raise click.UsageError("--raw and --config: give one")
    setup_logging("error", None)
    driver = open_store(store_of(store), existing=True)
    try:
        found = trio.run(read, driver, reference)
        if show_config:
            config = trio.run(_config, driver, found.top)
    except RegistryError as exc:
        click.echo(f"layerfs: {reference}: {exc}", err=True)
        sys.exit(NOT_FOUND)
    if raw:
        sys.stdout.buffer.write(found.top.raw)
    elif show_config:
        sys.stdout.buffer.write(config)
    elif as_json:
        click.echo(json.dumps(_as_json(found), indent=2))
    else:
        _print(found)


async def _config(driver, top) -> bytes:  # type: ignore[no-untyped-def]
    from ..passes.inspection import platform_name
    from ..storage import Registry
    from ..storage.errors import RegistryError

    view = top
    if view.children:
        wanted = ARCHITECTURES.get(host.machine(), host.machine())
        matching = [
            c
            for c in view.children
            if c.platform.get("os") == "linux" and c.platform.get("architecture") == wanted
        ]
        if not matching:
            names = ", ".join(platform_name(c.platform) for c in view.children)
            raise RegistryError(f"an index without linux/{wanted} (it has {names})")
        view = matching[0]
    if view.config is None:
        raise RegistryError(f"{view.digest} ({view.media_type}) has no config")
    return await Registry(driver).blobs.get(view.config.digest)


def _view_json(view) -> dict:  # type: ignore[no-untyped-def]
    def blob(b) -> dict:  # type: ignore[no-untyped-def]
        return {"digest": str(b.digest), "mediaType": b.media_type, "size": b.size}

    found = {
        "digest": str(view.digest),
        "mediaType": view.media_type,
        "size": len(view.raw),
        "totalSize": view.total_size,
    }
    if view.platform:
        found["platform"] = view.platform
    if view.config is not None:
        found["config"] = blob(view.config)
    if not view.manifest.is_index:
        found["layers"] = [blob(b) for b in view.layers]
    if view.children:
        found["manifests"] = [_view_json(child) for child in view.children]
    return found


def _as_json(found) -> dict:  # type: ignore[no-untyped-def]
    doc = {"repository": found.repository, **({"tag": found.tag} if found.tag else {})}
    doc |= _view_json(found.top)
    if found.top.children:
        doc["platforms"] = [
            {**c.platform, "digest": str(c.digest)} for c in found.top.children if c.platform
        ]
    if found.tag:
        doc["history"] = [
            {
                "digest": str(e.digest),
                "written": e.written.isoformat() if e.written else None,
                "current": e.current,
            }
            for e in found.history
        ]
    return doc


def _print(found) -> None:  # type: ignore[no-untyped-def]
    from ..passes.inspection import platform_name

    top = found.top
    name = f"{found.repository}:{found.tag}" if found.tag else f"{found.repository}@{top.digest}"
    click.echo(name)
    click.echo(f"  digest      {top.digest}")
    click.echo(f"  media type  {top.media_type}")
    click.echo(f"  total size  {human(top.total_size)} ({top.total_size} bytes, each blob once)")
    if top.children:
        click.echo("  platforms")
        for child in top.children:
            where = platform_name(child.platform) if child.platform else "(none named)"
            click.echo(f"    {where:<16} {child.digest}  {_summary(child)}")
    else:
        _print_image(top, "  ")
    if found.tag:
        click.echo(f"  history of {found.tag} (oldest first)")
        for entry in found.history:
            when = f"{entry.written:%Y-%m-%dT%H:%M:%SZ}" if entry.written else "(time unknown)"
            click.echo(f"    {when}  {entry.digest}{'  current' if entry.current else ''}")


def _summary(view) -> str:  # type: ignore[no-untyped-def]
    if view.children:
        return f"an index of {len(view.children)}, {human(view.total_size)}"
    return f"{plural(len(view.layers), 'layer')}, {human(view.total_size)}"


def _print_image(view, indent: str) -> None:  # type: ignore[no-untyped-def]
    if view.config is not None:
        click.echo(f"{indent}config      {view.config.digest}  {_size(view.config.size)}")
    click.echo(f"{indent}layers")
    for layer in view.layers:
        click.echo(f"{indent}  {layer.digest}  {_size(layer.size):>10}  {layer.media_type}")


def _size(size: int) -> str:
    return human(size) if size >= 0 else "not stored"
