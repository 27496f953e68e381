"""gc against ``docker-registry garbage-collect`` (2.8): two identical stores, made by
docker-registry + skopeo (on disk and on S3), one collected by each; what each
deleted is compared, and every difference is one layerfs makes on purpose."""

from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from layerfs.drivers import StorageDriver
from layerfs.passes.gc import GarbageCollector
from layerfs.storage import Digest, Registry, paths

from ..conftest import S3_BUCKET, Store
from ..images import image_of, oci_index, random_tar, write_oci_index_layout, write_oci_layout
from ..mounts import LAYERFS, Mount
from ..registry import DockerRegistry, skopeo, skopeo_push
from ..registry_states import snapshot
from ..stores import FilesystemStore, S3Store, age

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@dataclass
class Built:
    """What the test store holds, by stored digest."""

    tagged: set[Digest]  # manifests a tag names
    untagged: Digest  # app/one's v2 before it was pushed again
    untagged_refs: set[str]  # its config and layer
    children: set[Digest]  # the per-arch manifests of app/multi's index
    children_refs: set[str]  # their configs and layers
    orphan: Digest  # a blob pushed with no manifest
    dangling: Digest  # app/two links it; no blob


def manifest_digest(registry: DockerRegistry, repo: str, tag: str) -> Digest:
    resp = registry.get_manifest(repo, tag, MANIFEST_TYPES)
    assert resp.status == 200, resp.body
    return Digest.parse(resp.headers["Docker-Content-Digest"])


async def build_store(registry: DockerRegistry, driver: StorageDriver, workdir: Path) -> Built:
    """Shared layers across repositories, an untagged manifest, a multi-arch index,
    an orphan blob and a dangling layer link."""
    rng = random.Random(7)
    shared = random_tar(rng)
    pushes = {
        "app/one:v1": image_of([shared, random_tar(rng)], seed=1),
        "app/two:v1": image_of([shared, random_tar(rng)], seed=2),
        "app/one:v2": image_of([random_tar(rng)], seed=3),
    }
    for n, (reference, image) in enumerate(pushes.items()):
        skopeo_push(write_oci_layout(image, workdir / f"l{n}", "t"), "t", registry, reference)
    untagged = manifest_digest(registry, "app/one", "v2")
    newer = image_of([random_tar(rng)], seed=4)
    skopeo_push(write_oci_layout(newer, workdir / "l9", "t"), "t", registry, "app/one:v2")
    arches = {
        a: image_of([random_tar(rng)], seed=5 + i, arch=a) for i, a in enumerate(["amd64", "arm64"])
    }
    write_oci_index_layout(arches, workdir / "multi", "t")
    skopeo(
        "copy", "--all", "--dest-tls-verify=false", f"oci:{workdir / 'multi'}:t",
        f"docker://{registry.host}/app/multi:latest",
    )  # fmt: skip
    index = manifest_digest(registry, "app/multi", "latest")
    children = {
        c.digest
        for c in (
            await Registry(driver).repository("app/multi").manifests.get_parsed(index)
        ).manifests
    }
    orphan = Digest.parse(registry.push_blob("app/one", rng.randbytes(5000)))
    dangling = Digest.of(b"a blob that was never stored")
    await driver.put_content(paths.layer_link("app/two", dangling), str(dangling).encode())
    tagged = {
        manifest_digest(registry, r, t)
        for r, t in [("app/one", "v1"), ("app/two", "v1"), ("app/one", "v2")]
    }
    untagged_refs = await references(driver, "app/one", untagged)
    children_refs = set()
    for child in children:
        children_refs |= await references(driver, "app/multi", child)
    return Built(
        tagged | {index}, untagged, untagged_refs, children, children_refs, orphan, dangling
    )


async def references(driver: StorageDriver, name: str, manifest: Digest) -> set[str]:
    """The config and layer digests of a manifest."""
    parsed = await Registry(driver).repository(name).manifests.get_parsed(manifest)
    return {str(d.digest) for d in parsed.blob_references()}


def twin_stores(store: Store, tmp_path: Path) -> tuple[Store, Store]:
    if isinstance(store, S3Store):
        return (
            S3Store(store.gateway, S3_BUCKET, f"{store.prefix}-registry"),
            S3Store(store.gateway, S3_BUCKET, f"{store.prefix}-layerfs"),
        )
    (tmp_path / "registry-gc").mkdir()
    (tmp_path / "layerfs-gc").mkdir()
    return FilesystemStore(tmp_path / "registry-gc"), FilesystemStore(tmp_path / "layerfs-gc")


def layerfs_gc(store: Store, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LAYERFS, "gc", *flags, store.spec],
        capture_output=True, text=True, env={**os.environ, **store.env}, timeout=300,
    )  # fmt: skip


async def collect_both(store: Store, tmp_path: Path, *flags: str):  # type: ignore[no-untyped-def]
    """Build two equal stores, collect one with each tool; returns what each
    deleted, what the store held before and what was built."""
    deleted, built_stores = [], []
    for twin in twin_stores(store, tmp_path):
        workdir = tmp_path / f"w-{len(built_stores)}"
        workdir.mkdir()
        registry = DockerRegistry(workdir, twin.registry_storage()).start()
        driver = twin.driver()
        try:
            built = await build_store(registry, driver, workdir)
            before = await snapshot(driver)
            if not deleted:
                result = registry.garbage_collect(*flags)
            else:
                result = layerfs_gc(twin, "--grace", "0s", *flags)
            assert result.returncode == 0, result.stdout + result.stderr
            deleted.append(before - await snapshot(driver))
            built_stores.append(built)
        finally:
            registry.stop()
            await driver.aclose()
    return deleted[0], deleted[1], before, built_stores[1]


async def test_gc_like_the_registry(store: Store, tmp_path: Path) -> None:
    by_registry, by_layerfs, before, built = await collect_both(store, tmp_path)
    orphan_link = ("layer-link", "app/one", str(built.orphan))
    dangling_link = ("layer-link", "app/two", str(built.dangling))
    assert by_registry == {("blob", str(built.orphan))}
    # the same blobs, and no link left pointing at nothing (registry 2.8 leaves both links)
    assert by_layerfs == by_registry | {orphan_link, dangling_link}
    assert orphan_link in before and dangling_link in before


async def test_gc_delete_untagged_like_the_registry(store: Store, tmp_path: Path) -> None:
    by_registry, by_layerfs, before, built = await collect_both(
        store, tmp_path, "--delete-untagged"
    )
    # where both agree: the untagged manifest, its blob, its unique blobs, the orphan
    untagged = str(built.untagged)
    assert by_registry & by_layerfs == {
        ("revision", "app/one", untagged),
        ("tag-index", "app/one", "v2", untagged),
        ("blob", untagged),
        ("blob", str(built.orphan)),
        *{("blob", ref) for ref in built.untagged_refs},
    }
    # by design: registry 2.8 also deletes the index's children (no tag names them
    # directly) and the configs and layers only they reference, so app/multi:latest
    # cannot be pulled afterwards; layerfs keeps what a kept index needs
    assert by_registry - by_layerfs == {
        *{("revision", "app/multi", str(c)) for c in built.children},
        *{("blob", ref) for ref in built.children_refs},
    }
    # and layerfs removes the links of what it swept, and the dangling one
    assert by_layerfs - by_registry == {
        *{("layer-link", "app/one", ref) for ref in [*built.untagged_refs, str(built.orphan)]},
        ("layer-link", "app/two", str(built.dangling)),
    }


async def test_index_still_pulls_after_layerfs_gc(store: Store, tmp_path: Path) -> None:
    registry = DockerRegistry(tmp_path, store.registry_storage()).start()
    driver = store.driver()
    try:
        await build_store(registry, driver, tmp_path)
        result = layerfs_gc(store, "--grace", "0s", "--delete-untagged")
        assert result.returncode == 0, result.stderr
        assert "deleted manifest app/one@" in result.stdout
        for reference in ["app/multi:latest", "app/one:v1", "app/two:v1", "app/one:v2"]:
            out = tmp_path / reference.replace("/", "_")
            skopeo(
                "copy",
                "--all",
                "--src-tls-verify=false",
                f"docker://{registry.host}/{reference}",
                f"dir:{out}",
            )
        report = subprocess.run(
            [LAYERFS, "fsck", store.spec], capture_output=True, text=True,
            env={**os.environ, **store.env},
        )  # fmt: skip
        assert report.returncode == 0, report.stdout  # no link left pointing at nothing
    finally:
        registry.stop()
        await driver.aclose()


async def test_grace_keeps_a_push_in_flight(store_dir: Path, tmp_path: Path) -> None:
    """A push whose blobs are stored but whose manifest is not yet: the registry's
    collector deletes the blobs; layerfs keeps them for the grace period."""
    registry = DockerRegistry(tmp_path, {"filesystem": {"rootdirectory": str(store_dir)}}).start()
    try:
        stale = Digest.parse(registry.push_blob("app/one", b"abandoned long ago"))
        age(store_dir, 7200)
        in_flight = Digest.parse(registry.push_blob("app/one", b"the layer of a push in flight"))
        dry = layerfs_gc(FilesystemStore(store_dir), "--dry-run")
        assert f"would delete blob {stale}" in dry.stdout
        assert f"kept blob {in_flight} (younger than 1h)" in dry.stdout
        assert has_blob(store_dir, stale)  # a dry run deletes nothing

        result = layerfs_gc(FilesystemStore(store_dir))
        assert result.returncode == 0, result.stderr
        assert f"deleted blob {stale}" in result.stdout
        assert not has_blob(store_dir, stale) and has_blob(store_dir, in_flight)
        # the registry's own collector, with no grace, takes the push in flight
        assert registry.garbage_collect().returncode == 0
        assert not has_blob(store_dir, in_flight)
    finally:
        registry.stop()


def has_blob(root: Path, digest: Digest) -> bool:
    return (root / paths.blob_data(digest).lstrip("/")).exists()


async def test_refuses_a_read_write_mount(store_dir: Path, tmp_path: Path) -> None:
    store = FilesystemStore(store_dir)
    mounted = Mount(store.spec, tmp_path / "mnt", tmp_path / "m.log").start()
    try:
        refused = layerfs_gc(store)
        assert refused.returncode == 1
        assert "mounted read-write at" in refused.stderr and str(tmp_path / "mnt") in refused.stderr
        assert layerfs_gc(store, "--dry-run").returncode == 0
        (tmp_path / "alias").symlink_to(store_dir)  # the same store by another name
        through_link = layerfs_gc(FilesystemStore(tmp_path / "alias"))
        assert through_link.returncode == 1 and "mounted read-write at" in through_link.stderr
        bind = tmp_path / "bind"  # the same directory, though no path resolves to it
        bind.mkdir()
        subprocess.run(["mount", "--bind", str(store_dir), str(bind)], check=True)
        try:
            through_bind = layerfs_gc(FilesystemStore(bind))
        finally:
            subprocess.run(["umount", str(bind)], check=True)
        assert through_bind.returncode == 1 and "mounted read-write at" in through_bind.stderr
        assert layerfs_gc(store, "--force").returncode == 0
    finally:
        mounted.stop()
    read_only = Mount(store.spec, tmp_path / "ro", tmp_path / "ro.log", "-o", "ro").start()
    try:
        assert layerfs_gc(store).returncode == 0
    finally:
        read_only.stop()


@pytest.mark.parametrize("grace", ["1y", "soon", "1d2"])
def test_bad_grace(store_dir: Path, grace: str) -> None:
    result = layerfs_gc(FilesystemStore(store_dir), "--grace", grace)
    assert result.returncode == 2 and "invalid duration" in result.stderr


def test_durations_take_days_beside_go_units() -> None:
    from layerfs.storage.maintenance import parse_duration

    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("1d12h") == timedelta(hours=36)
    assert parse_duration("1h30m") == timedelta(minutes=90)


async def test_an_index_in_two_repositories_keeps_its_children_in_both(
    driver: StorageDriver,
) -> None:
    registry = Registry(driver)
    arches = {
        a: image_of([random_tar(random.Random(i))], seed=i, arch=a)
        for i, a in enumerate(["amd64", "arm64"])
    }
    for name in ("one/app", "two/app"):
        repo = registry.repository(name)
        for image in arches.values():
            for blob in [*image.layers, image.config]:
                await repo.layers.link(await registry.blobs.put(blob))
            await repo.manifests.put(image.manifest)
        await repo.tags.tag("latest", await repo.manifests.put(oci_index(arches)))
    result = await GarbageCollector(driver, delete_untagged=True, grace=timedelta(0)).run()
    assert result.deleted == [] and result.unreadable == []
