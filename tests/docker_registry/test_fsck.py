"""fsck: a store made by docker-registry + skopeo (on disk and on S3) is clean;
each kind of damage is found, nothing is removed without --repair, --repair
removes exactly the broken things, and what was sound still serves."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from layerfs.drivers import FilesystemDriver, MemoryDriver, StorageDriver
from layerfs.drivers.s3 import S3Driver
from layerfs.passes.fsck import fsck
from layerfs.storage import Digest, Registry, ResumableSha256, paths

from ..conftest import Store
from ..images import make_image, sha256, write_oci_layout
from ..mounts import LAYERFS
from ..registry import DockerRegistry, skopeo_pull, skopeo_push
from ..stores import S3Store


def layerfs(store: Store, *args: str, tty: bool = False) -> subprocess.CompletedProcess[str]:
    command = [LAYERFS, *args]
    if tty:  # under a pseudo-terminal, as a person at a shell runs it
        command = ["script", "-qec", " ".join(command), "/dev/null"]
    return subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **store.env}, timeout=300
    )


def fsck_json(store: Store, *args: str) -> tuple[int, dict]:
    result = layerfs(store, "fsck", "--json", *args, store.spec)
    return result.returncode, json.loads(result.stdout)


async def store_keys(driver: StorageDriver) -> set[str]:
    return {info.path async for info in driver.walk("/") if not info.is_dir}


def push_images(registry: DockerRegistry, tmp_path: Path) -> tuple[object, object]:
    first, second = make_image(seed=71), make_image(seed=72)
    skopeo_push(write_oci_layout(first, tmp_path / "one", "v1"), "v1", registry, "app/a:v1")
    skopeo_push(write_oci_layout(second, tmp_path / "two", "v1"), "v1", registry, "app/b:v1")
    return first, second


def registry_upload(registry: DockerRegistry, repo: str, data: bytes) -> str:
    """An upload the registry leaves open after one PATCH; returns its uuid."""
    location = registry.patch(registry.start_upload(repo), data)
    return location.split("/blobs/uploads/", 1)[1].split("?", 1)[0]


async def test_registry_made_store_damage_found_and_repaired(
    store: Store, store_registry: DockerRegistry, tmp_path: Path
) -> None:
    push_images(store_registry, tmp_path)
    no_start = registry_upload(store_registry, "app/a", os.urandom(1000))
    bad_state = registry_upload(store_registry, "app/b", os.urandom(3000))
    code, report = fsck_json(store)
    assert (code, report["findings"], report["clean"]) == (0, [], True)
    assert report["checked"]["uploads"] == 2 and report["checked"]["manifests"] == 2

    driver = store.driver()
    registry = Registry(driver)
    a_manifest = await registry.repository("app/a").tags.resolve("v1")
    a_layer = (await registry.repository("app/a").manifests.get_parsed(a_manifest)).layers[0]
    original = await driver.get_content(paths.blob_data(a_layer.digest))
    await driver.put_content(paths.blob_data(a_layer.digest), bytes(len(original)))
    bogus = Digest.of(b"bogus")
    await driver.put_content(paths.layer_link("app/b", bogus), b"nonsense")
    dangling = Digest.of(b"never stored")
    await driver.put_content(paths.layer_link("app/b", dangling), str(dangling).encode())
    await driver.delete(paths.upload_started_at("app/a", no_start))
    state_path = paths.upload_hash_state("app/b", bad_state, "sha256", 3000)
    await driver.put_content(state_path, ResumableSha256(os.urandom(3000)).marshal())
    before = await store_keys(driver)

    code, report = fsck_json(store)
    found = {(f["kind"], f["path"]) for f in report["findings"]}
    a_layer_link = paths.layer_link("app/a", a_layer.digest)
    # on S3 the registry's open uploads are multipart uploads not yet completed: a
    # check cannot read them without completing them, so it counts them instead
    on_s3 = isinstance(store, S3Store)
    unread = {("upload-bad-hashstate", state_path)} if on_s3 else set()
    assert found | unread == {
        ("blob-corrupt", paths.blob_data(a_layer.digest)),
        ("link-dangling", a_layer_link),
        ("manifest-missing-blob", paths.manifest_revision_link("app/a", a_manifest)),
        ("tag-dangling", paths.tag_current_link("app/a", "v1")),
        ("link-invalid", paths.layer_link("app/b", bogus)),
        ("upload-no-startedat", paths.upload_dir("app/a", no_start)),
        ("upload-bad-hashstate", state_path),
    }
    # a layer link to an absent blob is what the registry's garbage-collect leaves
    assert report["registry_states"] == {
        "link-to-collected-blob": 1,
        **({"write-in-progress": 2} if on_s3 else {}),
    }
    assert code == 4 and not report["clean"]
    assert not any(f["removed"] for f in report["findings"])
    assert await store_keys(driver) == before  # a check alone changes nothing

    # a repair right after the damage leaves it all: a writer may be in the middle
    kept = layerfs(store, "fsck", "--repair", store.spec)
    assert kept.returncode == 4, kept.stdout + kept.stderr
    assert "  removed " not in kept.stdout and "0 repaired" in kept.stdout
    assert kept.stdout.count("within the grace (1:00:00)") == (6 if on_s3 else 7)
    code, report = fsck_json(store, "--repair")  # the same, for scripts
    assert code == 4 and len(report["findings"]) == (6 if on_s3 else 7)
    assert all("within the grace" in f["kept"] and not f["removed"] for f in report["findings"])
    assert await store_keys(driver) == before

    repaired = layerfs(store, "fsck", "--repair", "--grace", "0s", store.spec)
    assert repaired.returncode == 1, repaired.stdout + repaired.stderr
    removed = {line.split()[1] for line in repaired.stdout.splitlines() if "  removed " in line}
    assert removed == {
        paths.blob_dir(a_layer.digest),
        a_layer_link.rsplit("/", 1)[0],
        paths.manifest_revision_link("app/a", a_manifest).rsplit("/", 1)[0],
        paths.tag_dir("app/a", "v1"),
        paths.layer_link("app/b", bogus).rsplit("/", 1)[0],
        paths.upload_dir("app/a", no_start),
        *([] if on_s3 else [state_path]),
    }
    assert f"{6 if on_s3 else 7} problems, {6 if on_s3 else 7} repaired" in repaired.stdout
    assert await driver.exists(paths.layer_link("app/b", dangling))  # normal: kept

    code, report = fsck_json(store)
    assert (code, report["findings"]) == (0, [])
    # what was sound still serves: app/b pulls, and its upload resumes and finishes
    skopeo_pull(store_registry, "app/b:v1", tmp_path / "pulled")
    assert store_registry.get_manifest("app/a", "v1", "application/json").status == 404
    data = paths.upload_data("app/b", bad_state)
    if on_s3:  # still the registry's multipart upload: no check or repair completed it
        assert [w.path for w in await driver.pending_writes(data)] == [data]
    else:
        assert await driver.get_content(data)
    await driver.aclose()


async def test_layerfs_made_store_is_clean(store: Store) -> None:
    driver = store.driver()
    repo = Registry(driver).repository("app/made")
    data = os.urandom(6 << 20)
    upload = await repo.uploads.create()
    await upload.write(data)
    await upload.finish(Digest.of(data))
    open_upload = await repo.uploads.create()
    await open_upload.write(data[:1_000_003])
    await open_upload.close()
    image = make_image(seed=5)
    for layer in [*image.layers, image.config]:
        blob = await repo.uploads.create()
        await blob.write(layer)
        await blob.finish(Digest.parse(sha256(layer)))
    digest = await repo.manifests.put(image.manifest)
    await repo.tags.tag("latest", digest)
    await driver.aclose()

    result = layerfs(store, "fsck", store.spec)
    assert result.returncode == 0, result.stdout
    assert result.stderr == ""  # no terminal: no progress bar
    assert "checked 5 blobs" in result.stdout and "1 uploads: 0 problems" in result.stdout


async def test_no_data_hashes_nothing_and_checks_the_rest(store: Store) -> None:
    """``--no-data``: a blob whose bytes were changed goes unseen; everything that
    needs no hashing (a blob directory without data, a dangling link) is found."""
    driver = store.driver()
    blobs = Registry(driver).blobs
    changed = await blobs.put(b"the original bytes")
    await driver.put_content(paths.blob_data(changed), b"other bytes, same name")
    emptied = await blobs.put(b"soon without data")
    await driver.delete(paths.blob_data(emptied))
    await driver.put_content(f"{paths.blob_dir(emptied)}/other", b"")
    await driver.aclose()
    everything = {("blob-corrupt", paths.blob_data(changed)),
                  ("blob-no-data", paths.blob_dir(emptied))}  # fmt: skip

    code, report = fsck_json(store)
    assert code == 4 and {(f["kind"], f["path"]) for f in report["findings"]} == everything
    code, report = fsck_json(store, "--no-data")
    assert code == 4 and [(f["kind"], f["path"]) for f in report["findings"]] == [
        ("blob-no-data", paths.blob_dir(emptied))
    ]
    assert report["checked"]["blobs"] == 1


async def test_progress_bar_on_a_terminal(store_dir: Path) -> None:
    driver = FilesystemDriver(str(store_dir))
    repo = Registry(driver).repository("app/tty")
    upload = await repo.uploads.create()
    await upload.write(os.urandom(1 << 20))
    await upload.close()
    result = subprocess.run(
        ["script", "-qec", f"{LAYERFS} fsck {store_dir}", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "fsck:" in result.stdout and "B/s" in result.stdout  # tqdm's bar with its rate
    await driver.aclose()


# details, on every driver ------------------------------------------------------


async def put_revision(driver: StorageDriver, name: str, payload: bytes) -> Digest:
    digest = await Registry(driver).blobs.put(payload)
    await driver.put_content(paths.manifest_revision_link(name, digest), str(digest).encode())
    return digest


async def test_manifest_kinds(driver: StorageDriver) -> None:
    schema1 = await put_revision(driver, "a/b", json.dumps({"schemaVersion": 1}).encode())
    unknown = await put_revision(
        driver, "a/b", json.dumps({"schemaVersion": 2, "mediaType": "x/y"}).encode()
    )
    not_json = await put_revision(driver, "a/b", b"\x00 not json")
    report = await fsck(driver, repair=True, grace=timedelta(0))
    kinds = {(f.kind, f.removed) for f in report.findings}
    assert kinds == {("manifest-unknown", False), ("manifest-invalid", True)}
    revisions = await Registry(driver).repository("a/b").manifests.digests()
    assert set(revisions) == {schema1, unknown}  # only the unparsable one went
    assert not_json not in revisions


async def test_hash_states(driver: StorageDriver) -> None:
    repo = Registry(driver).repository("a/b")
    upload = await repo.uploads.create()
    data = os.urandom(200_000)
    await upload.write(data[:70_000])
    await upload.close()  # a true state at 70000
    upload = await repo.uploads.resume(upload.id)
    await upload.write(data[70_000:])
    await upload.close()  # and at 200000
    beyond = paths.upload_hash_state("a/b", upload.id, "sha256", 300_000)
    await driver.put_content(beyond, ResumableSha256(os.urandom(300_000)).marshal())
    garbage = paths.upload_hash_state("a/b", upload.id, "sha256", 5)
    await driver.put_content(garbage, b"short")
    totals: list[int] = []
    seen: list[int] = []
    pending_before = await driver.pending_writes(paths.upload_data("a/b", upload.id))
    report = await fsck(driver, progress=seen.append, on_total=totals.append)
    assert {(f.kind, f.path) for f in report.findings} == {("upload-bad-hashstate", garbage)}
    # a state beyond the data is what a PATCH cut short leaves in the registry: unused
    assert report.registry_states["state-beyond-data"] == 1
    # an S3 upload that was closed, not finished, is a multipart upload: its states
    # are checked against their offsets and its size, its bytes are not read
    hashed = 0 if isinstance(driver, S3Driver) else 200_000
    assert totals == [hashed] and sum(seen) == hashed
    assert await driver.pending_writes(paths.upload_data("a/b", upload.id)) == pending_before


async def test_odd_entries_are_reported_and_kept() -> None:
    driver = MemoryDriver()
    await driver.put_content(f"{paths.BLOBS}/md5/ab/x/data", b"?")
    await driver.put_content(f"{paths.BLOBS}/sha256/zz/not-hex/data", b"?")
    await driver.put_content(f"{paths.uploads_dir('a/b')}/stray/data", b"?")
    report = await fsck(driver, repair=True)
    assert {f.kind for f in report.findings} == {"odd-entry"}
    assert len(report.findings) == 3 and not any(f.removed for f in report.findings)
    assert len(await store_keys(driver)) == 3


@pytest.mark.parametrize("workers", [1, 4])
async def test_many_blobs_at_once(driver: StorageDriver, workers: int) -> None:
    blobs = Registry(driver).blobs
    stored = [await blobs.put(os.urandom(n)) for n in (0, 1, 5000, 300_000)]
    bad = stored[2]
    await driver.put_content(paths.blob_data(bad), b"x" * 5000)
    report = await fsck(driver, workers=workers)
    assert [(f.kind, f.path) for f in report.findings] == [("blob-corrupt", paths.blob_data(bad))]
    assert report.blobs == 4 and report.blob_bytes == 305_001
