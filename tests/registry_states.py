"""A store written only by docker-registry 2.8 (its HTTP API, skopeo and raw HTTP),
in every state its API can leave: what the differential suite checks layerfs on."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import socket
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from layerfs.drivers import PathNotFoundError, StorageDriver
from layerfs.storage import Registry, paths

from .images import (
    OCI_MANIFEST,
    Image,
    descriptor,
    image_of,
    random_tar,
    sha256,
    write_oci_index_layout,
    write_oci_layout,
)
from .registry import DockerRegistry, skopeo
from .stores import FilesystemStore, S3Store

SCHEMA1_CONFIG = {"compatibility": {"schema1": {"enabled": True}}}
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
ACCEPT_ALL = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    ]
)


@dataclass
class RegistryMade:
    """What the builder made, as the registry serves it."""

    tags: list[str] = field(default_factory=list)  # repo:tag, each pullable
    schema1_tags: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)  # every state reached, in order

    def reached(self, state: str) -> None:
        self.states.append(state)


def schema1_able_registry(workdir: Path, storage: dict) -> DockerRegistry:
    """A registry that accepts schema1 pushes, as long-lived registries were set up."""
    registry = DockerRegistry(workdir, storage)
    registry.config.update(SCHEMA1_CONFIG)
    return registry


def with_history(image: Image) -> Image:
    """The image with one history entry per layer (skopeo needs them for schema1)."""
    config = json.loads(image.config)
    config["history"] = [{"created_by": f"layer {i}"} for i in range(len(image.layers))]
    raw_config = json.dumps(config, sort_keys=True).encode()
    manifest = json.loads(image.manifest)
    manifest["config"] = descriptor(manifest["config"]["mediaType"], raw_config)
    raw_manifest = json.dumps(manifest).encode()
    blobs = {sha256(b): b for b in [*image.layers, raw_config, raw_manifest]}
    return Image(image.layers, raw_config, raw_manifest, blobs)


def empty_tar() -> bytes:
    return bytes(10240)  # what tar writes for an archive with no members


def _push(workdir: Path, registry: DockerRegistry, image: Image, ref: str, *flags: str) -> None:
    layout = write_oci_layout(image, workdir / f"layout-{image.manifest_digest[7:19]}", "t")
    skopeo("copy", "--dest-tls-verify=false", *flags, f"oci:{layout}:t", _docker(registry, ref))


def _docker(registry: DockerRegistry, ref: str) -> str:
    return f"docker://{registry.host}/{ref}"


def manifest_digest(registry: DockerRegistry, repo: str, reference: str) -> str:
    resp = registry.get_manifest(repo, reference, ACCEPT_ALL)
    assert resp.status == 200, (repo, reference, resp.status, resp.body)
    return resp.headers["Docker-Content-Digest"]


def put_manifest(registry: DockerRegistry, repo: str, reference: str, payload: bytes) -> None:
    media_type = json.loads(payload)["mediaType"]
    resp = registry.request(
        "PUT", f"/v2/{repo}/manifests/{reference}", payload, {"Content-Type": media_type}
    )
    assert resp.status == 201, (resp.status, resp.body)


def chunked_upload(registry: DockerRegistry, repo: str, data: bytes, chunks: int = 3) -> str:
    location = registry.start_upload(repo)
    step = -(-len(data) // chunks)
    for start in range(0, len(data), step):
        location = registry.patch(location, data[start : start + step])
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    resp = registry.finish(location, digest)
    assert resp.status == 201, (resp.status, resp.body)
    return digest


def patch_cut_short(registry: DockerRegistry, location: str, data: bytes, sent: int) -> None:
    """A PATCH whose client goes away after ``sent`` of ``len(data)`` bytes."""
    url = urllib.parse.urlsplit(registry.url + location if location.startswith("/") else location)
    target = url.path + (f"?{url.query}" if url.query else "")
    head = (
        f"PATCH {target} HTTP/1.1\r\nHost: {registry.host}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", registry.port), timeout=10) as conn:
        conn.sendall(head.encode() + data[:sent])
    # the registry notices the closed connection and keeps what arrived


def build(registry: DockerRegistry, workdir: Path) -> RegistryMade:
    """Every state the registry's API can leave (see each ``made.reached``)."""
    made = RegistryMade()
    rng = random.Random(12)
    shared = random_tar(rng)

    # schema2, pushed by tag, then the same tag pushed again (a moved tag)
    first = image_of([shared, random_tar(rng)], seed=1)
    _push(workdir, registry, first, "s/schema2:v1", "--format", "v2s2")
    moved_from = manifest_digest(registry, "s/schema2", "v1")
    second = image_of([shared, random_tar(rng)], seed=2)
    _push(workdir, registry, second, "s/schema2:v1", "--format", "v2s2")
    made.tags.append("s/schema2:v1")
    made.reached("schema2 manifest pushed by tag; the tag pushed twice (moved)")

    # an OCI image with an empty layer
    oci = image_of([empty_tar(), random_tar(rng)], seed=3)
    _push(workdir, registry, oci, "s/oci:v1")
    made.tags.append("s/oci:v1")
    made.reached("OCI image manifest with an empty layer")

    # schema1, signed on the way in and stored as the registry stores it
    old = with_history(image_of([shared, random_tar(rng)], seed=4))
    _push(workdir, registry, old, "s/schema1:v1", "--format", "v2s1")
    made.tags.append("s/schema1:v1")
    made.schema1_tags.append("s/schema1:v1")
    made.reached("schema1 manifest (signed push, stored unsigned)")

    # multi-arch: an OCI index and a Docker manifest list
    arches = {
        a: image_of([random_tar(rng)], seed=5 + i, arch=a) for i, a in enumerate(["amd64", "arm64"])
    }
    write_oci_index_layout(arches, workdir / "multi", "t")
    multi = f"oci:{workdir / 'multi'}:t"
    skopeo("copy", "--all", "--dest-tls-verify=false", multi, _docker(registry, "s/multi:oci"))
    skopeo(
        "copy", "--all", "--format", "v2s2", "--dest-tls-verify=false", multi,
        _docker(registry, "s/multi:list"),
    )  # fmt: skip
    made.tags += ["s/multi:oci", "s/multi:list"]
    made.reached("OCI index and Docker manifest list, with their children")

    # a manifest pushed by digest only, and an artifact that names it as its subject
    byd = image_of([random_tar(rng)], seed=8)
    for blob in [*byd.layers, byd.config]:
        registry.push_blob("s/byd", blob)
    put_manifest(registry, "s/byd", byd.manifest_digest, byd.manifest)
    made.reached("manifest pushed by digest (untagged)")
    signature = b"a signature of sorts"
    registry.push_blob("s/byd", signature)
    registry.push_blob("s/byd", b"{}")
    artifact = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2},
            "layers": [descriptor("application/vnd.example.signature.v1", signature)],
            "subject": descriptor(OCI_MANIFEST, byd.manifest),
        }
    ).encode()
    put_manifest(registry, "s/byd", "sig", artifact)
    made.tags.append("s/byd:sig")
    made.reached("OCI artifact manifest with artifactType and subject")

    # blobs by a monolithic and by a chunked upload; one mounted into another
    # repository and used by an image there; the other deleted
    layer = random_tar(rng)
    registry.push_blob("s/blobs", layer)
    made.reached("monolithic upload (POST, PUT with the body)")
    chunked = chunked_upload(registry, "s/blobs", rng.randbytes(100_000))
    made.reached("chunked upload (POST, PATCH, PATCH, PATCH, PUT)")
    resp = registry.request(
        "POST", f"/v2/s/mounted/blobs/uploads/?mount={sha256(layer)}&from=s/blobs"
    )
    assert resp.status == 201, (resp.status, resp.body)
    mounted = image_of([layer], seed=9)
    registry.push_blob("s/mounted", mounted.config)
    put_manifest(registry, "s/mounted", "v1", mounted.manifest)
    made.tags.append("s/mounted:v1")
    made.reached("cross-repository blob mount (?mount=&from=), used by an image")
    resp = registry.request("DELETE", f"/v2/s/blobs/blobs/{chunked}")
    assert resp.status == 202, (resp.status, resp.body)
    made.reached("blob deleted by digest (its layer link removed)")

    # uploads cancelled, abandoned, and abandoned in the middle of a PATCH
    location = registry.patch(registry.start_upload("s/blobs"), rng.randbytes(5000))
    resp = registry.request("DELETE", location)
    assert resp.status == 204, (resp.status, resp.body)
    made.reached("upload cancelled (DELETE)")
    registry.patch(registry.start_upload("s/blobs"), rng.randbytes(7000))
    made.reached("upload abandoned after a PATCH")
    location = registry.patch(registry.start_upload("s/blobs"), rng.randbytes(4000))
    patch_cut_short(registry, location, rng.randbytes(200_000), sent=100_000)
    made.reached("upload abandoned in the middle of a PATCH")

    # a manifest deleted by digest: the old schema2 image the moved tag named
    resp = registry.request("DELETE", f"/v2/s/schema2/manifests/{moved_from}")
    assert resp.status == 202, (resp.status, resp.body)
    deleted = image_of([random_tar(rng)], seed=10)
    _push(workdir, registry, deleted, "s/deleted:v1", "--format", "v2s2")
    digest = manifest_digest(registry, "s/deleted", "v1")
    resp = registry.request("DELETE", f"/v2/s/deleted/manifests/{digest}")
    assert resp.status == 202, (resp.status, resp.body)
    made.reached("manifests deleted by digest (a tagged one, and one a moved tag had named)")
    return made


async def snapshot(driver: StorageDriver) -> set[tuple[str, ...]]:
    """Every blob, manifest revision, tag history entry and layer link."""
    registry = Registry(driver)
    items: set[tuple[str, ...]] = {("blob", str(d)) for d in await registry.blobs.digests()}
    for name in await registry.repositories():
        repo = registry.repository(name)
        items |= {("revision", name, str(d)) for d in await repo.manifests.digests()}
        items |= {("layer-link", name, str(d)) for d in await repo.layers.digests()}
        for tag in await repo.tags.list():
            try:
                entries = await driver.list(paths.tag_index_dir(name, tag) + "/sha256")
            except PathNotFoundError:
                continue
            items |= {("tag-index", name, tag, "sha256:" + e.rsplit("/", 1)[1]) for e in entries}
    return items


def clone(store: FilesystemStore | S3Store, name: str, workdir: Path) -> FilesystemStore | S3Store:
    """A copy of ``store``'s files (on S3 its keys; multipart uploads in progress stay
    behind), with their modification times on disk."""
    if isinstance(store, FilesystemStore):
        shutil.copytree(store.root, workdir / name, symlinks=True)
        return FilesystemStore(workdir / name)
    copy = S3Store(store.gateway, store.bucket, f"{store.prefix}-{name}")
    for rel in store.files("docker"):
        store.client.copy_object(
            Bucket=store.bucket,
            Key=f"{copy.prefix}/{rel}",
            CopySource={"Bucket": store.bucket, "Key": f"{store.prefix}/{rel}"},
        )
    return copy
