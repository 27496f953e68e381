"""Where exported images go: an OCI image layout, a ``docker save``-style tarball
(an OCI layout inside, plus ``manifest.json`` for ``docker load``), or a registry.

Blocking code, run in worker threads. A blob is checked against its digest while
it is written and only then put in place, so an interrupted export leaves no
half-written blob under a digest name."""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..drivers.beneath import Beneath
from ..storage.digest import Digest
from ..storage.manifests import Manifest, parse_manifest
from .sources import REF_NAME, SourceError, json_document, read_below

if TYPE_CHECKING:  # requests loads only for docker:// locations
    from .registry_client import RegistryClient

OCI_LAYOUT = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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


def _refuse_symlink(path: str) -> None:
    if os.path.islink(path):
        raise SourceError(f"{path} is a symbolic link: refused as a destination")


class OciLayoutDestination(ImageDestination):
    """Every file is made below the layout directory without following a symbolic
    link: new ones with O_EXCL, each renamed over its name (which replaces a link
    found there, never what it points at)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.description = f"oci:{directory}"
        _refuse_symlink(directory)
        os.makedirs(directory, exist_ok=True)
        self.beneath = Beneath(os.path.abspath(directory))

    def has_blob(self, digest: Digest, size: int) -> bool:
        try:
            fd = self.beneath.open_dir(["blobs", digest.algorithm])
        except OSError:
            return False
        try:
            found = os.stat(digest.hex, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return False
        finally:
            os.close(fd)
        return stat.S_ISREG(found.st_mode) and found.st_size == size

    def put_blob(self, digest: Digest, size: int, body: Iterable[bytes]) -> None:
        def copy(out: io.BufferedIOBase) -> None:
            _checked_copy(body, out, digest, size)

        self._put(["blobs", digest.algorithm], digest.hex, copy)

    def _put(self, parts: list[str], name: str, fill) -> None:  # type: ignore[no-untyped-def]
        """Write ``name`` in directory ``parts`` through a fresh temporary file."""
        try:
            fd = self.beneath.open_dir(parts, create=True)
        except OSError as exc:
            raise SourceError(f"{self.directory}/{'/'.join(parts)}: {exc.strerror}") from None
        tmp = f".partial-{uuid.uuid4().hex}"
        try:
            out_fd = os.open(tmp, _CREATE, 0o644, dir_fd=fd)
            try:
                with os.fdopen(out_fd, "wb") as out:
                    fill(out)
                os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=fd)
                raise
        finally:
            os.close(fd)

    def put_manifest(self, payload: bytes, digest: Digest, media_type: str) -> None:
        self.put_blob(digest, len(payload), [payload])

    def _index(self) -> dict:
        where = os.path.join(self.directory, "index.json")
        try:
            fd = self.beneath.open_dir([])
            try:
                os.stat("index.json", dir_fd=fd, follow_symlinks=False)
            finally:
                os.close(fd)
        except FileNotFoundError:
            return {"schemaVersion": 2, "manifests": []}
        return json_document(read_below(self.beneath, "/index.json", where), where)

    def finish(self, tag: str, digest: Digest, media_type: str, payload: bytes) -> None:
        index = self._index()
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
        self._put([], "oci-layout", lambda out: out.write(OCI_LAYOUT))
        self._put([], "index.json", lambda out: out.write(json.dumps(index).encode()))


class ArchiveDestination(ImageDestination):
    """A tarball written front to back, so one blob at a time."""

    parallel = False

    def __init__(self, path: str, repo_tag: str) -> None:
        self.path, self.repo_tag = path, repo_tag
        self.description = f"docker-archive:{path}"
        _refuse_symlink(path)
        directory, name = os.path.split(os.path.abspath(path))
        # a fresh file (O_EXCL: never one a symlink names), renamed over PATH at the end
        fd, self.partial = tempfile.mkstemp(dir=directory, prefix=f".{name}.partial-")
        out = os.fdopen(fd, "wb")
        self.tar = tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
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
        self.tar.fileobj.close()  # type: ignore[union-attr]
        _refuse_symlink(self.path)  # made meanwhile: still not followed, not replaced
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
        if not self.tar.closed or os.path.exists(self.partial):  # unfinished: no tarball
            self.tar.close()
            self.tar.fileobj.close()  # type: ignore[union-attr]
            with contextlib.suppress(FileNotFoundError):
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
