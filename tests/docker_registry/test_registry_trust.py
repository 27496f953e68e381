"""What layerfs may trust about a store the registry wrote, and what it must not
assume: gc stops when it cannot read everything, the grace period covers a push
that only links, fsck reads revisions where their links point and completes a
finish cut short, every manifest kind parses, and a bad STORE is a usage error."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from layerfs.drivers import FilesystemDriver, MemoryDriver, StorageDriver, StorageDriverError
from layerfs.passes.fsck import fsck
from layerfs.passes.gc import GarbageCollector
from layerfs.storage import Digest, ManifestBlobsUnknownError, Registry, parse_manifest, paths
from layerfs.storage.manifests import DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED

from ..images import image_of, make_image, random_tar, sha256
from ..mounts import LAYERFS, Mount, run_layerfs
from ..registry import DockerRegistry, skopeo_pull
from ..stores import age
from ..wrappers import CountingDriver

OLD = timedelta(hours=3)


async def push_image(registry: Registry, name: str, seed: int) -> Digest:
    image = make_image(seed=seed, layers=1)
    repo = registry.repository(name)
    for blob in [*image.layers, image.config]:
        await repo.layers.link(await registry.blobs.put(blob))
    return await repo.manifests.put(image.manifest)


def layerfs(*args: str) -> subprocess.CompletedProcess[str]:
    return run_layerfs(*args, timeout=120)


# gc: an incomplete mark deletes nothing ---------------------------------------------


async def unreadable_revision(driver: StorageDriver, kind: str) -> str:
    """A revision gc cannot read, of the kind named; returns what it names."""
    registry = Registry(driver)
    if kind == "not-json":
        digest = await registry.blobs.put(b"\x00 not a manifest")
        await driver.put_content(paths.manifest_revision_link("a/b", digest), str(digest).encode())
        return str(digest)
    if kind == "bad-link":
        digest = Digest.of(b"whatever")
        await driver.put_content(paths.manifest_revision_link("a/b", digest), b"nonsense")
        return str(digest)
    # an index whose child manifest is not in the store at all
    child = make_image(seed=40, layers=1)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": child.manifest_digest,
                    "size": len(child.manifest),
                }
            ],
        }
    ).encode()
    digest = await registry.blobs.put(index)
    await driver.put_content(paths.manifest_revision_link("a/b", digest), str(digest).encode())
    return child.manifest_digest


@pytest.mark.parametrize("kind", ["not-json", "bad-link", "missing-child"])
async def test_gc_deletes_nothing_after_an_incomplete_mark(kind: str) -> None:
    driver = MemoryDriver()
    registry = Registry(driver)
    await push_image(registry, "a/b", seed=41)
    orphan = await registry.blobs.put(b"no manifest names me")
    named = await unreadable_revision(driver, kind)
    later = datetime.now(UTC) + OLD  # everything is older than the grace
    for dry_run in (True, False):
        result = await GarbageCollector(driver, dry_run=dry_run, now=later).run()
        assert not result.complete and result.deleted == []
        assert any(named in what for what in result.unreadable), result.unreadable
    assert await registry.blobs.exists(orphan)


def test_gc_command_refuses_after_an_incomplete_mark(tmp_path: Path) -> None:
    driver = FilesystemDriver(str(tmp_path))

    async def make() -> tuple[Digest, str]:
        orphan = await Registry(driver).blobs.put(b"no manifest names me")
        return orphan, await unreadable_revision(driver, "not-json")

    orphan, named = trio.run(make)
    for flags in ([], ["--dry-run"]):
        result = layerfs("gc", "--grace", "0s", *flags, str(tmp_path))
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"unreadable manifest a/b@{named}" in result.stderr
        assert "nothing: 1 manifests or repositories could not be read" in result.stderr
        assert "Traceback" not in result.stderr
    assert (tmp_path / paths.blob_data(orphan).lstrip("/")).exists()


# gc: the grace period protects a push that only links ---------------------------------


async def test_a_push_between_mark_and_sweep_keeps_its_blobs(
    store_dir: Path, tmp_path: Path
) -> None:
    """Blobs orphaned for 3 hours are pushed again into a second repository while
    gc runs (the registry writes only layer links for blobs it holds); the sweep
    sees the fresh links and keeps them, and the new tag pulls."""
    registry = DockerRegistry(tmp_path, {"filesystem": {"rootdirectory": str(store_dir)}}).start()
    driver = FilesystemDriver(str(store_dir))
    try:
        image = image_of([random_tar(random.Random(5))], seed=50)
        for blob in [*image.layers, image.config]:
            registry.push_blob("app/first", blob)  # orphans: no manifest names them
        age(store_dir, OLD.total_seconds())
        orphans = {Digest.parse(sha256(b)) for b in [*image.layers, image.config]}
        dry = await GarbageCollector(driver, dry_run=True).run()
        assert {d.digest for d in dry.deleted if d.kind == "blob"} == orphans

        pushed = trio.Event()

        async def push_in_the_window(_: Digest) -> None:
            if pushed.is_set():
                return

            def push() -> None:
                for blob in [*image.layers, image.config]:
                    digest = sha256(blob)
                    resp = registry.request(
                        "POST", f"/v2/app/second/blobs/uploads/?mount={digest}&from=app/first"
                    )
                    assert resp.status == 201, resp.status  # mounted: a link, no new data
                resp = registry.request(
                    "PUT",
                    "/v2/app/second/manifests/v1",
                    image.manifest,
                    {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                )
                assert resp.status == 201, (resp.status, resp.body)

            await trio.to_thread.run_sync(push)
            pushed.set()

        result = await GarbageCollector(driver, before_blob_check=push_in_the_window).run()
        assert pushed.is_set() and result.complete
        assert not [d for d in result.deleted if d.kind == "blob"]
        assert {d.digest for d in result.kept_young if d.kind == "blob"} == orphans
        skopeo_pull(registry, "app/second:v1", tmp_path / "pulled")
    finally:
        registry.stop()
        await driver.aclose()


# fsck ---------------------------------------------------------------------------------


async def test_fsck_reads_a_revision_where_its_link_points() -> None:
    """A revision link that names another blob is reported, not a crash."""
    driver = MemoryDriver()
    registry = Registry(driver)
    real = await push_image(registry, "a/b", seed=42)
    elsewhere = Digest.of(b"a manifest that is not stored")
    await driver.put_content(paths.manifest_revision_link("a/b", elsewhere), str(real).encode())
    report = await fsck(driver)
    assert [(f.kind, f.path) for f in report.findings] == [
        ("link-mismatch", paths.manifest_revision_link("a/b", elsewhere))
    ]


class LinkFailingDriver(FilesystemDriver):
    """Fails link writes below ``_layers`` as a full disk would."""

    async def put_content(self, path: str, content: bytes) -> None:
        if "/_layers/" in path:
            raise StorageDriverError(f"{path}: No space left on device")
        await super().put_content(path, content)


async def finish_cut_after_move(root: Path) -> tuple[str, Digest]:
    """An upload whose finish moved its data into blobs/ and then failed to link."""
    cut = LinkFailingDriver(str(root))
    repo = Registry(cut).repository("app/cut")
    upload = await repo.uploads.create()
    data = os.urandom(300_000)
    await upload.write(data)
    with pytest.raises(StorageDriverError):
        await upload.finish(Digest.of(data))
    return upload.id, Digest.of(data)


async def test_fsck_names_and_completes_a_finish_cut_after_its_move(store_dir: Path) -> None:
    upload_id, blob = await finish_cut_after_move(store_dir)
    driver = FilesystemDriver(str(store_dir))
    assert await Registry(driver).blobs.exists(blob)
    report = await fsck(driver)
    assert [(f.kind, f.path) for f in report.findings] == [
        ("upload-finish-interrupted", paths.upload_dir("app/cut", upload_id))
    ]
    assert str(blob) in report.findings[0].detail
    assert not await driver.exists(paths.layer_link("app/cut", blob))  # a check changes nothing
    repaired = await fsck(driver, repair=True)
    assert repaired.findings[0].removed
    assert await Registry(driver).repository("app/cut").layers.target(blob) == blob
    assert not await driver.exists(paths.upload_dir("app/cut", upload_id))
    assert (await fsck(driver)).clean


@pytest.mark.parametrize("closed_first", [False, True])
async def test_a_finish_records_its_state_once(closed_first: bool) -> None:
    """The state at the final size is on the store before the move: put by the
    finish itself, or (after a close) known to be there already and not put again."""
    driver = CountingDriver(MemoryDriver())
    uploads = Registry(driver).repository("a/b").uploads
    upload = await uploads.create()
    data = os.urandom(70_000)
    await upload.write(data)
    if closed_first:
        await upload.close()
        upload = await uploads.resume(upload.id)
    await upload.finish(Digest.of(data))
    state = paths.upload_hash_state("a/b", upload.id, "sha256", len(data))
    assert driver.puts[state] == 1


async def test_a_mount_completes_a_finish_cut_after_its_move(
    store_dir: Path, tmp_path: Path
) -> None:
    upload_id, blob = await finish_cut_after_move(store_dir)
    link = store_dir / paths.layer_link("app/cut", blob).lstrip("/")
    mounted = Mount(store_dir, tmp_path / "mnt", tmp_path / "m.log").start()
    try:
        upload = store_dir / paths.upload_dir("app/cut", upload_id).lstrip("/")
        deadline = time.monotonic() + 20
        log = tmp_path / "m.log"
        # the link is written first, the upload removed after it, then the line logged
        while time.monotonic() < deadline and "completed the finish" not in log.read_text():
            await trio.sleep(0.05)
        assert link.read_text() == str(blob)
        assert not upload.exists()
        assert "completed the finish of upload" in log.read_text()
    finally:
        mounted.stop()


# manifests ----------------------------------------------------------------------------


def schema1(layers: list[str], signed: bool) -> bytes:
    doc: dict = {
        "schemaVersion": 1,
        "name": "old/app",
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": d} for d in layers],
        "history": [{"v1Compatibility": "{}"} for _ in layers],
    }
    if signed:
        doc["signatures"] = [{"header": {"alg": "ES256"}, "signature": "x", "protected": "y"}]
    return json.dumps(doc, indent=3).encode()


@pytest.mark.parametrize("signed", [False, True])
async def test_schema1_is_read_and_registered(signed: bool) -> None:
    driver = MemoryDriver()
    registry = Registry(driver)
    repo = registry.repository("old/app")
    layer, empty = os.urandom(500), b"\x1f\x8b empty layer"
    digests = [sha256(empty), sha256(layer), sha256(empty)]  # schema1 repeats empty layers
    payload = schema1(digests, signed)
    manifest = parse_manifest(payload)
    assert manifest.media_type == (DOCKER_SCHEMA1_SIGNED if signed else DOCKER_SCHEMA1)
    assert [str(d.digest) for d in manifest.blob_references()] == digests[:2]
    with pytest.raises(ManifestBlobsUnknownError) as missing:
        await repo.manifests.put(payload)
    assert {str(d) for d in missing.value.missing} == set(digests)
    for blob in (layer, empty):
        await repo.layers.link(await registry.blobs.put(blob))
    digest = await repo.manifests.put(payload)
    await repo.tags.tag("v1", digest)
    report = await fsck(driver)
    assert report.clean and report.manifests == 1
    result = await GarbageCollector(driver, grace=timedelta(0)).run()
    assert result.complete and not [d for d in result.deleted if d.kind == "blob"]


def test_an_artifact_names_its_subject_without_referencing_it() -> None:
    subject = make_image(seed=43, layers=1)
    payload = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.example.sbom",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": sha256(b"{}"),
                "size": 2,
            },
            "layers": [
                {"mediaType": "application/json", "digest": sha256(b"[]"), "size": 2},
            ],
            "subject": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": subject.manifest_digest,
                "size": len(subject.manifest),
            },
        }
    ).encode()
    manifest = parse_manifest(payload)
    assert manifest.artifact_type == "application/vnd.example.sbom"
    assert manifest.subject is not None and str(manifest.subject.digest) == subject.manifest_digest
    assert {str(d.digest) for d in manifest.blob_references()} == {sha256(b"{}"), sha256(b"[]")}


# the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["fsck", "ftp://host/store"],
        ["gc", "ftp://host/store"],
        ["purge-uploads", "ftp://host/store"],
        ["import", "oci:/nonexistent:t", "ftp://host/store", "a/b:t"],
        ["export", "ftp://host/store", "a/b:t", "oci:/tmp/x:t"],
    ],
)
def test_a_bad_store_is_a_usage_error(args: list[str]) -> None:
    result = layerfs(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unsupported store 'ftp://host/store'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["fsck", "gc", "purge-uploads", "mount"])
def test_a_file_where_a_directory_belongs_is_a_usage_error(command: str, tmp_path: Path) -> None:
    file = tmp_path / "a-file"
    file.write_text("not a store")
    args = [command, str(file)] + ([str(tmp_path / "mnt")] if command == "mount" else [])
    result = layerfs(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"STORE {file} is not a directory" in result.stderr
    assert "Traceback" not in result.stderr
    if command == "mount":  # and a file as the mount point
        store = tmp_path / "store"
        result = layerfs("mount", "-f", str(store), str(file))
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"MOUNTPOINT {file} is not a directory" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["fsck", "gc", "purge-uploads", "export"])
@pytest.mark.parametrize("where", ["missing", "/etc"])
def test_a_path_that_is_no_registry_store_exits_8_and_creates_nothing(
    command: str, where: str, tmp_path: Path
) -> None:
    store = tmp_path / "missing" if where == "missing" else Path(where)
    before = sorted(os.listdir(store)) if store.exists() else None
    args = [command, str(store)] + (["a:b", str(tmp_path / "out")] if command == "export" else [])
    result = layerfs(*args)
    assert result.returncode == 8, result.stdout + result.stderr
    assert f"{store} is not a registry store" in result.stderr
    assert "Traceback" not in result.stderr
    assert (sorted(os.listdir(store)) if store.exists() else None) == before
    assert not (tmp_path / "out").exists()


def test_an_empty_directory_is_a_store_that_never_stored(tmp_path: Path) -> None:
    result = layerfs("fsck", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.listdir(tmp_path) == []


def test_a_mistyped_command_mounts_nothing(store_dir: Path, tmp_path: Path) -> None:
    """``layerfs fsk STORE`` once meant ``mount fsk STORE``: a directory ``fsk`` made
    here and an empty store mounted over the real one."""
    here = tmp_path / "here"
    here.mkdir()
    result = subprocess.run(
        [LAYERFS, "fsk", str(store_dir)], capture_output=True, text=True, timeout=60, cwd=here
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "No such command 'fsk'" in result.stderr
    assert "Did you mean 'fsck'" in result.stderr
    assert os.listdir(here) == []
    with open("/proc/self/mountinfo") as info:
        assert str(store_dir) not in info.read()
