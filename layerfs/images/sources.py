"""Where images come from: an OCI image layout, a ``docker save`` tarball, a registry.

Sources are plain blocking code (files and HTTP); the copier runs them in worker
threads. Every source hands out manifests as bytes with their digest and blobs as
chunk iterators that can start at an offset, so an interrupted blob resumes.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..storage.digest import Digest
from ..storage.manifests import DOCKER_MANIFEST

if TYPE_CHECKING:  # requests loads only for docker:// locations
    from .registry_client import RegistryClient

CHUNK = 4 << 20  # large reads: fewer thread hops per byte
REF_NAME = "org.opencontainers.image.ref.name"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_TAR_LAYER = "application/vnd.docker.image.rootfs.diff.tar"


class SourceError(Exception):
    """The image cannot be read from its source (permanent: no retry helps)."""


@dataclass(frozen=True)
class Fetched:
    payload: bytes
    digest: Digest


def verified(payload: bytes, digest: Digest | None) -> Fetched:
    actual = Digest.of(payload, digest.algorithm if digest else "sha256")
    if digest is not None and actual != digest:
        raise SourceError(f"manifest content hashes to {actual}, not {digest}")
    return Fetched(payload, actual if digest is None else digest)


class ImageSource(abc.ABC):
    description: str

    @abc.abstractmethod
    def top_manifest(self) -> Fetched:
        """The manifest (or index) the reference names."""

    @abc.abstractmethod
    def manifest(self, digest: Digest) -> bytes:
        """A child manifest's bytes, as stored; the copier checks them against ``digest``."""

    @abc.abstractmethod
    def blob(self, digest: Digest, offset: int = 0) -> Iterator[bytes]: ...

    def close(self) -> None:  # noqa: B027 - most sources hold nothing
        pass


def _read_range(path: str, start: int, size: int, offset: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start + offset)
        left = size - offset
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise SourceError(f"{path} ends early")
            left -= len(chunk)
            yield chunk


def _pick_from_index(index: dict, tag: str | None, where: str) -> dict:
    entries = index.get("manifests") or []
    if tag is None:
        if len(entries) != 1:
            raise SourceError(f"{where} holds {len(entries)} images; name one with :TAG")
        return entries[0]
    for entry in entries:
        if (entry.get("annotations") or {}).get(REF_NAME) == tag:
            return entry
    raise SourceError(f"{where} has no image tagged {tag!r}")


class OciLayoutSource(ImageSource):
    """An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/``)."""

    def __init__(self, directory: str, tag: str | None) -> None:
        self.directory, self.tag = directory, tag
        self.description = f"oci:{directory}" + (f":{tag}" if tag else "")
        try:
            with open(os.path.join(directory, "index.json"), "rb") as f:
                self.index = json.load(f)
        except (OSError, ValueError) as exc:
            raise SourceError(f"{directory} is not an OCI image layout: {exc}") from None

    def _path(self, digest: Digest) -> str:
        return os.path.join(self.directory, "blobs", digest.algorithm, digest.hex)

    def top_manifest(self) -> Fetched:
        entry = _pick_from_index(self.index, self.tag, self.directory)
        digest = Digest.parse(entry["digest"])
        return verified(self.manifest(digest), digest)

    def manifest(self, digest: Digest) -> bytes:
        try:
            with open(self._path(digest), "rb") as f:
                return f.read()
        except OSError as exc:
            raise SourceError(f"{self.description}: no blob {digest}: {exc.strerror}") from None

    def blob(self, digest: Digest, offset: int = 0) -> Iterator[bytes]:
        path = self._path(digest)
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise SourceError(f"{self.description}: no blob {digest}: {exc.strerror}") from None
        return _read_range(path, 0, size, offset)


class ArchiveSource(ImageSource):
    """A ``docker save`` tarball: an OCI layout inside the tar (Docker 25 and later)
    or the older ``manifest.json`` form, whose schema2 manifest is made here from the
    config and the uncompressed layers."""

    def __init__(self, path: str, reference: str | None) -> None:
        self.path, self.reference = path, reference
        self.description = f"docker-archive:{path}"
        self.members: dict[str, tuple[int, int]] = {}  # name -> (offset, size)
        try:
            with tarfile.open(path, "r:") as tar:
                for member in tar:
                    if member.isfile():
                        self.members[member.name.lstrip("./")] = (member.offset_data, member.size)
        except (OSError, tarfile.TarError) as exc:
            raise SourceError(f"{path} is not an uncompressed tar archive: {exc}") from None
        self.by_digest: dict[Digest, str] = {}
        self.made: Fetched | None = None
        if "index.json" in self.members:
            for name in self.members:
                parts = name.split("/")
                if len(parts) == 3 and parts[0] == "blobs":
                    self.by_digest[Digest.from_parts(parts[1], parts[2])] = name
        elif "manifest.json" in self.members:
            self.made = self._legacy_manifest()
        else:
            raise SourceError(f"{path} holds neither index.json nor manifest.json")

    def _member_bytes(self, name: str) -> bytes:
        return b"".join(_read_range(self.path, *self.members[name], 0))

    def _legacy_manifest(self) -> Fetched:
        images = json.loads(self._member_bytes("manifest.json"))
        if self.reference is None:
            if len(images) != 1:
                raise SourceError(f"{self.path} holds {len(images)} images; name one")
            image = images[0]
        else:
            wanted = [i for i in images if self.reference in (i.get("RepoTags") or [])]
            if not wanted:
                raise SourceError(f"{self.path} has no image {self.reference!r}")
            image = wanted[0]
        config = self._member_bytes(image["Config"])
        config_digest = Digest.of(config)
        self.by_digest[config_digest] = image["Config"]
        layers = []
        for name in image["Layers"]:
            digest = Digest("sha256", _sha256_of(_read_range(self.path, *self.members[name], 0)))
            self.by_digest[digest] = name
            layers.append(
                {
                    "mediaType": DOCKER_TAR_LAYER,
                    "size": self.members[name][1],
                    "digest": str(digest),
                }
            )
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG,
                "size": len(config),
                "digest": str(config_digest),
            },
            "layers": layers,
        }
        return verified(json.dumps(manifest, indent=3).encode(), None)

    def top_manifest(self) -> Fetched:
        if self.made is not None:
            return self.made
        index = json.loads(self._member_bytes("index.json"))
        entry = _pick_from_index(index, self.reference, self.path)
        digest = Digest.parse(entry["digest"])
        return verified(self.manifest(digest), digest)

    def manifest(self, digest: Digest) -> bytes:
        if digest not in self.by_digest:
            raise SourceError(f"{self.description}: no blob {digest}")
        return self._member_bytes(self.by_digest[digest])

    def blob(self, digest: Digest, offset: int = 0) -> Iterator[bytes]:
        if digest not in self.by_digest:
            raise SourceError(f"{self.description}: no blob {digest}")
        return _read_range(self.path, *self.members[self.by_digest[digest]], offset)


def _sha256_of(chunks: Iterator[bytes]) -> str:
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()


class RegistrySource(ImageSource):
    """``docker://HOST/REPO:TAG`` over the registry HTTP API."""

    def __init__(self, client: RegistryClient, repository: str, reference: str) -> None:
        self.client, self.repository, self.reference = client, repository, reference
        self.description = f"docker://{client.host}/{repository}:{reference}"

    def top_manifest(self) -> Fetched:
        payload, digest = self.client.get_manifest(self.repository, self.reference)
        expected = Digest.parse(self.reference) if ":" in self.reference else digest
        return verified(payload, expected)

    def manifest(self, digest: Digest) -> bytes:
        return self.client.get_manifest(self.repository, str(digest))[0]  # checked by the caller

    def blob(self, digest: Digest, offset: int = 0) -> Iterator[bytes]:
        return self.client.get_blob(self.repository, digest, offset)

    def close(self) -> None:
        self.client.close()
