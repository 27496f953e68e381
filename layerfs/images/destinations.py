"""Where exported images go: an OCI image layout, a ``docker save``-style tarball
(an OCI layout inside, plus ``manifest.json`` for ``docker load``), or a registry.

Blocking code, run in worker threads. A blob is checked against its digest while
it is written and only then put in place, so an interrupted export leaves no
half-written blob under a digest name."""

from __future__ import annotations

import abc
import hashlib
import io
import json
import os
import tarfile
import tempfile
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..storage.digest import Digest
from ..storage.manifests import Manifest, parse_manifest
from .sources import REF_NAME, SourceError

if TYPE_CHECKING:  # requests loads only for docker:// locations
    from .registry_client import RegistryClient

OCI_LAYOUT = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()


class ImageDestination(abc.ABC):
    description: str
    parallel = True  # blobs may be written several at once

    @abc.abstractmethod
    def has_blob(self, digest: Digest, size: int) -> bool: ...

    @abc.abstractmethod
    def put_blob(self, digest: Digest, size: int, body: Iterable[bytes]) -> None: ...

    @abc.abstractmethod
    def put_manifest(self, payload: bytes, digest: Digest, media_type: str) -> None: ...

    @abc.abstractmethod
    def finish(self, tag: str, digest: Digest, media_type: str, payload: bytes) -> None:
        """Name the top manifest ``tag``."""

    def close(self) -> None:  # noqa: B027 - most destinations hold nothing
        pass


def _checked_copy(body: Iterable[bytes], out: io.BufferedIOBase, digest: Digest, size: int) -> None:
    hasher = hashlib.new(digest.algorithm)
    written = 0
    for chunk in body:
        hasher.update(chunk)
        out.write(chunk)
        written += len(chunk)
    if written != size or hasher.hexdigest() != digest.hex:
        raise SourceError(f"blob {digest}: got {written} bytes hashing to {hasher.hexdigest()}")


class OciLayoutDestination(ImageDestination):
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.description = f"oci:{directory}"
        os.makedirs(directory, exist_ok=True)

    def _path(self, digest: Digest) -> str:
        return os.path.join(self.directory, "blobs", digest.algorithm, digest.hex)

    def has_blob(self, digest: Digest, size: int) -> bool:
        try:
            return os.path.getsize(self._path(digest)) == size
        except OSError:
            return False

    def put_blob(self, digest: Digest, size: int, body: Iterable[bytes]) -> None:
        path = self._path(digest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as out:
                _checked_copy(body, out, digest, size)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def put_manifest(self, payload: bytes, digest: Digest, media_type: str) -> None:
        self.put_blob(digest, len(payload), [payload])

    def finish(self, tag: str, digest: Digest, media_type: str, payload: bytes) -> None:
        index_path = os.path.join(self.directory, "index.json")
        try:
            with open(index_path, "rb") as f:
                index = json.load(f)
        except FileNotFoundError:
            index = {"schemaVersion": 2, "manifests": []}
        entries = [
            e
            for e in index.get("manifests", [])
            if (e.get("annotations") or {}).get(REF_NAME) != tag
        ]
        entries.append(
            {"mediaType": media_type, "digest": str(digest), "size": len(payload),
             "annotations": {REF_NAME: tag}}
        )  # fmt: skip
        index["manifests"] = entries
        with open(os.path.join(self.directory, "oci-layout"), "wb") as f:
            f.write(OCI_LAYOUT)
        with open(index_path + ".tmp", "w") as f:
            json.dump(index, f)
        os.replace(index_path + ".tmp", index_path)


class ArchiveDestination(ImageDestination):
    """A tarball written front to back, so one blob at a time."""

    parallel = False

    def __init__(self, path: str, repo_tag: str) -> None:
        self.path, self.repo_tag = path, repo_tag
        self.description = f"docker-archive:{path}"
        self.partial = path + ".partial"
        self.tar = tarfile.open(self.partial, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.written: set[Digest] = set()
        self.manifests: dict[Digest, bytes] = {}
        self.lock = threading.Lock()  # one member at a time

    def has_blob(self, digest: Digest, size: int) -> bool:
        return digest in self.written

    def put_blob(self, digest: Digest, size: int, body: Iterable[bytes]) -> None:
        with tempfile.TemporaryFile() as spool:  # checked before it enters the tar
            _checked_copy(body, spool, digest, size)  # type: ignore[arg-type]
            spool.seek(0)
            with self.lock:
                if digest in self.written:
                    return
                self._add(f"blobs/{digest.algorithm}/{digest.hex}", size, spool)
                self.written.add(digest)

    def _add(self, name: str, size: int, content: io.IOBase) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, 0o644
        self.tar.addfile(info, content)  # type: ignore[arg-type]

    def put_manifest(self, payload: bytes, digest: Digest, media_type: str) -> None:
        self.manifests[digest] = payload
        self.put_blob(digest, len(payload), [payload])

    def finish(self, tag: str, digest: Digest, media_type: str, payload: bytes) -> None:
        index = {
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": media_type, "digest": str(digest), "size": len(payload),
                 "annotations": {REF_NAME: tag, "io.containerd.image.name": self.repo_tag}}
            ],
        }  # fmt: skip
        images = [
            {
                "Config": f"blobs/{m.config.digest.algorithm}/{m.config.digest.hex}",
                "RepoTags": [self.repo_tag],
                "Layers": [f"blobs/{d.digest.algorithm}/{d.digest.hex}" for d in m.layers],
            }
            for m in self._image_manifests(digest)
        ]
        for name, content in [
            ("oci-layout", OCI_LAYOUT),
            ("index.json", json.dumps(index).encode()),
            ("manifest.json", json.dumps(images[:1]).encode()),
        ]:
            self._add(name, len(content), io.BytesIO(content))
        self.tar.close()
        os.replace(self.partial, self.path)

    def _image_manifests(self, digest: Digest) -> list[Manifest]:
        """The image manifests below ``digest`` (for docker load's manifest.json)."""
        manifest = parse_manifest(self.manifests[digest])
        if not manifest.is_index:
            return [manifest] if manifest.config else []
        found = []
        for child in manifest.manifests:
            if child.digest in self.manifests:
                found += self._image_manifests(child.digest)
        return found

    def close(self) -> None:
        if not self.tar.closed:  # an export that did not finish leaves no tarball
            self.tar.close()
            os.unlink(self.partial)


class RegistryDestination(ImageDestination):
    def __init__(self, client: RegistryClient, repository: str) -> None:
        self.client, self.repository = client, repository
        self.description = f"docker://{client.host}/{repository}"

    def has_blob(self, digest: Digest, size: int) -> bool:
        return self.client.has_blob(self.repository, digest)

    def put_blob(self, digest: Digest, size: int, body: Iterable[bytes]) -> None:
        self.client.put_blob(self.repository, digest, size, body)

    def put_manifest(self, payload: bytes, digest: Digest, media_type: str) -> None:
        self.client.put_manifest(self.repository, str(digest), payload, media_type)

    def finish(self, tag: str, digest: Digest, media_type: str, payload: bytes) -> None:
        self.client.put_manifest(self.repository, tag, payload, media_type)

    def close(self) -> None:
        self.client.close()
