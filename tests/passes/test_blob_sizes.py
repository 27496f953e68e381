"""The blobs' sizes of a whole-store pass, stated in worker threads or in a child
process (``StorePass.blob_sizes``; on a local disk du reads the repositories while
they are stated): the same du and fsck either way, on drawn stores some of whose
blobs lost their data, or whose data became a directory or a symbolic link. du
counts the bytes of the blobs that still have data; each damaged one is odd to du
and a finding of fsck (a revision's blob among them crashed fsck once: a directory
where its data belongs was judged a blob of no bytes, then read)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerfs.drivers import FilesystemDriver
from layerfs.passes.fsck import fsck
from layerfs.passes.storepass import NOT_A_FILE
from layerfs.passes.usage import Usage, read_store
from layerfs.storage import Digest, paths

from .test_space_model import OCI_MANIFEST, Model, descriptor, stores, write

DAMAGE = ("no data", "a directory", "a symbolic link")


def _damage(root: Path, digest: Digest, how: str, outside: Path) -> None:
    data = root / paths.blob_data(digest).lstrip("/")
    data.unlink()
    if how == "a directory":
        data.mkdir()
    elif how == "a symbolic link":
        data.symlink_to(outside)


async def _passes(root: Path, in_process: bool):  # type: ignore[no-untyped-def]
    driver = FilesystemDriver(root)
    driver.sizes_in_process_from = 1 if in_process else 1 << 62
    usage = Usage(await read_store(driver))
    report = await fsck(driver, check_data=False)
    found = [(f.kind, f.path, f.detail) for f in report.findings]
    rows = {by: usage.rows(by) for by in ("repo", "tag", "manifest")}
    return usage.summary(), rows, usage.odd(), found, report.blob_bytes


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(stores(), st.data())
def test_threads_and_a_child_state_the_same_sizes(store, data) -> None:  # type: ignore[no-untyped-def]
    layers, manifests, repos, orphans = store
    model = Model(layers, manifests, orphans)
    blobs = sorted(model.sizes)
    damaged = data.draw(st.dictionaries(st.sampled_from(blobs), st.sampled_from(DAMAGE)))
    base = Path(tempfile.mkdtemp(prefix="sizes-"))
    try:
        outside = base / "outside"
        outside.write_bytes(b"outside the store" * 1000)
        root = base / "store"
        trio.run(write, FilesystemDriver(root), layers, manifests, repos, orphans)
        for digest, how in damaged.items():
            _damage(root, digest, how, outside)
        in_threads = trio.run(_passes, root, False)
        in_a_child = trio.run(_passes, root, True)
    finally:
        shutil.rmtree(base)
    assert in_a_child == in_threads
    summary, _, odd, found, _ = in_a_child
    kept = {d for d in blobs if d not in damaged}
    assert summary.blobs.bytes == model.bytes(kept)
    assert summary.blobs.blobs == len(kept)
    kinds = [(k, p) for k, p, _ in found]
    for digest, how in damaged.items():
        blob = paths.blob_data(digest)
        if how == "no data":
            assert (paths.blob_dir(digest), "blob directory without data") in odd
            assert ("blob-no-data", paths.blob_dir(digest)) in kinds
        elif how == "a symbolic link":
            assert (blob, "a symbolic link, not followed") in odd
            assert ("unsafe-entry", blob) in kinds
        else:
            assert (blob, NOT_A_FILE) in odd
            assert ("unsafe-entry", blob) in kinds
        # a blob gone or never followed is no manifest that could not be read
        assert not any(p == blob and "not a readable manifest" in why for p, why in odd)


def test_a_revision_whose_data_is_a_directory_is_a_finding(tmp_path: Path) -> None:
    """The case the property found: fsck --no-data took the directory for a blob of
    no bytes, then failed reading it as the revision's manifest."""
    layer = b"layer 0"
    config = b'{"image": 0}'
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
    }).encode()  # fmt: skip
    root = tmp_path / "store"
    trio.run(write, FilesystemDriver(root), [layer], [manifest], {"app/a": ([manifest], {})}, [])
    _damage(root, Digest.of(manifest), "a directory", tmp_path)
    summary, _, odd, found, _ = trio.run(_passes, root, False)
    blob = paths.blob_data(Digest.of(manifest))
    assert (blob, NOT_A_FILE) in odd
    assert ("unsafe-entry", blob, NOT_A_FILE) in found
    assert summary.blobs.blobs == 2
