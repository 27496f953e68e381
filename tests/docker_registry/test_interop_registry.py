"""layerfs and docker-registry 2.8 on one store: each reads, serves and finishes
what the other wrote."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from layerfs.drivers import FilesystemDriver
from layerfs.storage import Digest, Registry, parse_manifest, paths
from layerfs.storage.hashstate import ResumableSha256

from ..images import make_image, write_oci_layout
from ..registry import DockerRegistry, signed_upload_location, skopeo_pull, skopeo_push
from ..storage.test_uploads import upload_bytes
from ..wrappers import CountingDriver

pytestmark = pytest.mark.registry


async def test_layerfs_reads_what_skopeo_pushed(
    docker_registry: DockerRegistry, store_dir: Path, tmp_path: Path
) -> None:
    image = make_image(40, layers=3)
    layout = write_oci_layout(image, tmp_path / "layout", "v1")
    skopeo_push(layout, "v1", docker_registry, "pushed/app:v1")
    registry = Registry(FilesystemDriver(str(store_dir)))
    assert await registry.repositories() == ["pushed/app"]
    repo = registry.repository("pushed/app")
    assert await repo.tags.list() == ["v1"]
    digest = await repo.tags.resolve("v1")
    payload = await repo.manifests.get(digest)
    assert Digest.of(payload) == digest
    manifest = parse_manifest(payload)
    assert len(manifest.layers) == 3
    for ref in manifest.blob_references():
        async with await repo.layers.open(ref.digest) as reader:
            content = await reader.read()
        assert len(content) == ref.size
        assert Digest.of(content) == ref.digest
    assert sorted(await repo.layers.digests()) == sorted(
        d.digest for d in manifest.blob_references()
    )


async def test_registry_serves_what_layerfs_wrote(
    docker_registry: DockerRegistry, store_dir: Path, tmp_path: Path
) -> None:
    image = make_image(41, layers=2, docker=True)
    registry = Registry(FilesystemDriver(str(store_dir)))
    for blob in [*image.layers, image.config]:
        await upload_bytes(registry, "written/by-layerfs", blob, 10_007)
    repo = registry.repository("written/by-layerfs")
    digest = await repo.manifests.put(image.manifest)
    await repo.tags.tag("latest", digest)

    resp = docker_registry.get_manifest(
        "written/by-layerfs", "latest", "application/vnd.docker.distribution.manifest.v2+json"
    )
    assert resp.status == 200
    assert resp.body == image.manifest
    assert resp.headers["Docker-Content-Digest"] == str(digest)

    out = tmp_path / "pulled"
    skopeo_pull(docker_registry, "written/by-layerfs:latest", out)
    assert (out / "manifest.json").read_bytes() == image.manifest
    for blob in [*image.layers, image.config]:
        assert (out / hashlib.sha256(blob).hexdigest()).read_bytes() == blob


async def test_layerfs_finishes_registry_upload_without_reread(
    docker_registry: DockerRegistry, store_dir: Path
) -> None:
    first, second = b"\x01" * 1_000_003, b"\x02" * 777_777
    location = docker_registry.start_upload("mixed/upload")
    location = docker_registry.patch(location, first)
    location = docker_registry.patch(location, second)
    upload_id = location.split("/blobs/uploads/")[1].split("?")[0]

    counting = CountingDriver(FilesystemDriver(str(store_dir)))
    repo = Registry(counting).repository("mixed/upload")
    upload = await repo.uploads.resume(upload_id)
    assert upload.size == len(first) + len(second)
    digest = Digest.of(first + second)
    await upload.finish(digest)
    assert counting.read_below("/data") == 0

    resp = docker_registry.get_blob("mixed/upload", str(digest))
    assert resp.status == 200
    assert resp.body == first + second


async def test_registry_finishes_layerfs_upload(
    docker_registry: DockerRegistry, store_dir: Path
) -> None:
    """layerfs writes and closes an upload; the registry appends a chunk (resuming our
    stored hash state) and finishes it."""
    ours, theirs = bytes(range(256)) * 3907, b"appended by the registry"
    registry = Registry(FilesystemDriver(str(store_dir)))
    repo = registry.repository("mixed/reverse")
    upload = await repo.uploads.create()
    await upload.write(ours)
    await upload.close()

    location = signed_upload_location(
        "mixed/reverse", upload.id, len(ours), upload.started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    status = docker_registry.request("GET", location)
    assert status.status == 204, status.body
    assert status.headers["Range"] == f"0-{len(ours) - 1}"
    location = docker_registry.patch(location, theirs)
    digest = Digest.of(ours + theirs)
    resp = docker_registry.finish(location, str(digest))
    assert resp.status == 201, resp.body
    assert await repo.layers.exists(digest)
    async with await repo.layers.open(digest) as reader:
        assert await reader.read() == ours + theirs
    assert await repo.uploads.ids() == []


async def test_registry_uses_the_stored_hash_state(
    docker_registry: DockerRegistry, store_dir: Path
) -> None:
    """The registry trusts the state layerfs stored: the wrong digest is refused, and a
    state swapped for one of other bytes makes even the right digest fail."""
    data = b"x" * 100_001
    driver = FilesystemDriver(str(store_dir))
    repo = Registry(driver).repository("mixed/state")
    uploads = []
    for _ in range(2):
        upload = await repo.uploads.create()
        await upload.write(data)
        await upload.close()
        uploads.append(upload)
    tampered = paths.upload_hash_state("mixed/state", uploads[1].id, "sha256", len(data))
    await driver.put_content(tampered, ResumableSha256(b"y" * len(data)).marshal())

    def finish(upload_id: str, digest: Digest) -> tuple[int, str]:
        location = signed_upload_location(
            "mixed/state",
            upload_id,
            len(data),
            uploads[0].started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        resp = docker_registry.finish(location, str(digest))
        code = json.loads(resp.body)["errors"][0]["code"] if resp.status >= 400 else ""
        return resp.status, code

    assert finish(uploads[0].id, Digest.of(b"y")) == (400, "DIGEST_INVALID")
    assert finish(uploads[1].id, Digest.of(data)) == (400, "DIGEST_INVALID")
    assert finish(uploads[0].id, Digest.of(data)) == (201, "")
