"""Test images: random tar layers, a config and a manifest, as bytes or as an OCI
image layout on disk (what ``skopeo copy oci:DIR`` reads)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from layerfs.storage import paths

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_tar(rng: random.Random, files: int = 4, max_size: int = 64 << 10) -> bytes:
    """A tar of ``files`` random files, like the seeds' CreateRandomTarFile."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(files):
            data = rng.randbytes(rng.randrange(1, max_size))
            info = tarfile.TarInfo(f"dir{i}/file{i}.bin")
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def descriptor(media_type: str, data: bytes) -> dict:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


@dataclass
class Image:
    layers: list[bytes]
    config: bytes
    manifest: bytes
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def manifest_digest(self) -> str:
        return sha256(self.manifest)


def make_image(seed: int, layers: int = 2, docker: bool = False, files: int = 4) -> Image:
    rng = random.Random(seed)
    return image_of([random_tar(rng, files) for _ in range(layers)], seed, docker)


def image_of(
    layer_blobs: list[bytes], seed: int, docker: bool = False, arch: str = "amd64"
) -> Image:
    """An image of the given layers (so that images can share some)."""
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Env": [f"SEED={seed}"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": [sha256(layer) for layer in layer_blobs],
            },
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
            "layers": [
                descriptor(DOCKER_LAYER if docker else OCI_LAYER, layer) for layer in layer_blobs
            ],
        },
        indent=3,
    ).encode()
    blobs = {sha256(b): b for b in [*layer_blobs, config, manifest]}
    return Image(layer_blobs, config, manifest, blobs)


def oci_index(images: dict[str, Image]) -> bytes:
    """An OCI index of one image per architecture."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    **descriptor(OCI_MANIFEST, image.manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for arch, image in images.items()
            ],
        }
    ).encode()


def write_oci_index_layout(images: dict[str, Image], directory: Path, tag: str) -> bytes:
    """An OCI layout whose ``tag`` names a multi-arch index; returns the index."""
    index = oci_index(images)
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for image in images.values():
        for digest, data in image.blobs.items():
            (blobs / digest.split(":", 1)[1]).write_bytes(data)
    (blobs / sha256(index).split(":", 1)[1]).write_bytes(index)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                **descriptor(OCI_INDEX, index),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (directory / "index.json").write_text(json.dumps(top))
    return index


def write_oci_layout(image: Image, directory: Path, tag: str) -> Path:
    """An OCI image layout holding ``image`` under ``tag``."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest, data in image.blobs.items():
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                **descriptor(OCI_MANIFEST, image.manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (directory / "index.json").write_text(json.dumps(index))
    return directory


def tree_digests(root: Path) -> dict[str, str]:
    """Every file below ``root`` with the sha256 of its content (for "nothing changed")."""
    found = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def uploads_named(root: Path, name: str) -> list[tuple[str, int]]:
    """The uploads of repository ``name`` in the store at ``root``: (name, bytes of data)."""
    found = []
    base = root / paths.uploads_dir(name).lstrip("/")
    for upload in base.iterdir() if base.exists() else []:
        label = (upload / "name").read_text() if (upload / "name").exists() else ""
        try:
            size = (upload / "data").stat().st_size
        except FileNotFoundError:  # not there yet while the import creates the upload
            size = 0
        found.append((label, size))
    return found
