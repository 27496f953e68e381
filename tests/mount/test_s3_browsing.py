"""Browsing an S3 store while docker-registry writes it: the promise of each kind of
path (README, "The mounted view"). What only digests name (blobs, layer and revision
links) is listed from an index kept INDEX_TIMEOUT and read again behind the browser;
a name the index lacks is asked of the store at once; the rest is listed anew after
DIR_TIMEOUT."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from layerfs.fs.state import DIR_TIMEOUT, INDEX_TIMEOUT

from ..conftest import S3_BUCKET
from ..images import Image, make_image, sha256
from ..mounts import Mount
from ..registry import DockerRegistry
from ..registry_states import put_manifest
from ..seaweed import SeaweedFS
from ..stores import V2, S3Store

SLACK = 3.0  # seconds for a request through FUSE and a listing on a busy machine


@pytest.fixture
def store(seaweedfs: SeaweedFS, tmp_path: Path) -> S3Store:
    """Only S3 here (conftest's ``store`` is both): ``store_registry`` serves it."""
    return S3Store(seaweedfs, S3_BUCKET, f"browse-{tmp_path.name}")


@pytest.fixture
def mounted(store: S3Store, store_registry: DockerRegistry, tmp_path: Path) -> Iterator[Path]:
    push(store_registry, "app/web", make_image(1), "v1")  # something to browse from the start
    mount = Mount(store.spec, tmp_path / "mnt", tmp_path / "m.log", env=store.env).start()
    try:
        yield mount.mountpoint
    finally:
        mount.stop()


def push(registry: DockerRegistry, repo: str, image: Image, tag: str) -> None:
    for blob in (*image.layers, image.config):
        registry.push_blob(repo, blob)
    put_manifest(registry, repo, tag, image.manifest)


def find(root: Path) -> list[str]:
    found = subprocess.run(["find", "."], cwd=root, capture_output=True, text=True, check=True)
    return found.stdout.splitlines()


def within(seconds: float, holds: Callable[[], bool]) -> float:
    """Seconds until ``holds()``; fails after ``seconds``."""
    start = time.monotonic()
    while not holds():
        assert time.monotonic() - start < seconds, f"not within {seconds} s"
        time.sleep(0.1)
    return time.monotonic() - start


def listed(directory: Path) -> list[str]:
    """``ls`` of a directory, nothing once the directory is gone too."""
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


def blob_path(root: Path, digest: str) -> Path:
    return root / "blobs/sha256" / digest[7:9] / digest[7:] / "data"


def stored_entries(store: S3Store) -> set[str]:
    """Every file and directory the store's keys make, as ``find`` prints them, but
    for the uploads (the view shows each as one file named by the user)."""
    entries = {"."}
    for key in store.files(V2):
        parts = key.split("/")[3:]  # below docker/registry/v2
        if "_uploads" in parts:
            parts = parts[: parts.index("_uploads") + 1]
        entries.update("./" + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return entries


def test_find_lists_every_entry_once(mounted: Path, store: S3Store) -> None:
    first, again = find(mounted), find(mounted)
    for walked in (first, again):
        assert len(walked) == len(set(walked))
        assert stored_entries(store) <= set(walked)
        shown_only = set(walked) - stored_entries(store)
        # directories every repository has, stored or not, and nothing else
        assert {p.rsplit("/", 1)[1] for p in shown_only} <= {"_uploads", "tags", "revisions"}
    assert sorted(first) == sorted(again)


def test_what_the_registry_pushes_is_readable_at_once_and_listed_in_time(
    mounted: Path, store_registry: DockerRegistry
) -> None:
    find(mounted)  # the index now holds every blob and link directory
    image = make_image(2)
    push(store_registry, "app/web", image, "v2")
    layer = sha256(image.layers[0])
    # by name at once: the index lacks them, the store is asked
    assert blob_path(mounted, layer).read_bytes() == image.layers[0]
    repo = mounted / "repositories/app/web"
    assert (repo / "_layers/sha256" / layer[7:] / "link").read_text() == layer
    revision = repo / "_manifests/revisions/sha256" / image.manifest_digest[7:] / "link"
    assert revision.read_text() == image.manifest_digest
    # a tag as any other directory: found and listed within DIR_TIMEOUT
    within(DIR_TIMEOUT + SLACK, lambda: "v2" in os.listdir(repo / "_manifests/tags"))
    assert (repo / "_manifests/tags/v2/current/link").read_text() == image.manifest_digest
    # listed: what digests name within the index's time
    index_time = INDEX_TIMEOUT + SLACK
    within(index_time, lambda: layer[7:] in os.listdir(blob_path(mounted, layer).parent.parent))
    within(index_time, lambda: layer[7:] in os.listdir(repo / "_layers/sha256"))
    revisions = repo / "_manifests/revisions/sha256"
    within(index_time, lambda: image.manifest_digest[7:] in os.listdir(revisions))


def test_a_blob_the_registry_collected_is_enoent_to_a_new_open(
    mounted: Path, store_registry: DockerRegistry
) -> None:
    image = make_image(3)
    push(store_registry, "app/gone", image, "v1")
    find(mounted)
    layer = blob_path(mounted, sha256(image.layers[0]))
    assert layer.read_bytes() == image.layers[0]  # the kernel holds its entry and pages now
    deleted = store_registry.request("DELETE", f"/v2/app/gone/manifests/{image.manifest_digest}")
    assert deleted.status == 202, deleted.body
    collected = store_registry.garbage_collect()
    assert collected.returncode == 0, collected.stderr
    with pytest.raises(FileNotFoundError) as refused:
        layer.open("rb")
    assert refused.value.errno == errno.ENOENT
    # and the listing lets it go within the index's time
    within(INDEX_TIMEOUT + SLACK, lambda: layer.parent.name not in listed(layer.parent.parent))
