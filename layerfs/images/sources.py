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
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..drivers.beneath import Beneath, NotRegularError, SymlinkError
from ..storage.digest import Digest
from ..storage.errors import RegistryError
from ..storage.manifests import DOCKER_MANIFEST

if TYPE_CHECKING:  # requests loads only for docker:// locations
    from .registry_client import RegistryClient

CHUNK = 4 << 20  # large reads: fewer thread hops per byte
# What a source may hand over. docker-registry refuses manifests over 4 MiB; an
# index.json or manifest.json is held to the same. A manifest names at most
# MAX_REFERENCES blobs or children, and indexes nest at most
# storage.manifests.MAX_INDEX_DEPTH deep.
MAX_MANIFEST = 4 << 20
MAX_CONFIG = 64 << 20  # a docker save config, read whole to make its manifest
MAX_REFERENCES = 10_000
REF_NAME = "org.opencontainers.image.ref.name"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_TAR_LAYER = "application/vnd.docker.image.rootfs.diff.tar"


class SourceError(Exception):
    """The image cannot be read from its source (permanent: no retry helps)."""


@dataclass(frozen=True)
class Fetched:
    payload: bytes
    digest: Digest


def bounded(payload: bytes, what: str, limit: int = MAX_MANIFEST) -> bytes:
    if len(payload) > limit:
        raise SourceError(f"{what} is larger than {limit} bytes: refused")
    return payload


def json_document(payload: bytes, what: str) -> dict:
    """A JSON object, or a SourceError that says what was wrong with it."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SourceError(f"{what} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SourceError(f"{what} is not a JSON object")
    return doc


def entry_digest(entry: object, where: str) -> Digest:
    """The digest of an index entry, or a SourceError naming the entry."""
    try:
        return Digest.parse(entry["digest"])  # type: ignore[index]
    except (KeyError, TypeError, RegistryError) as exc:
        raise SourceError(f"{where}: an index entry has no valid digest ({exc})") from None


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
        yield from _read_fd_range(f.fileno(), path, start, size, offset)


def _read_fd_range(fd: int, what: str, start: int, size: int, offset: int) -> Iterator[bytes]:
    position, left = start + offset, size - offset
    while left > 0:
        chunk = os.pread(fd, min(CHUNK, left), position)
        if not chunk:
            raise SourceError(f"{what} ends early")
        position += len(chunk)
        left -= len(chunk)
        yield chunk


def _open_beneath(beneath: Beneath, relative: str, what: str) -> int:
    """A read descriptor of the regular file ``relative`` below a layout directory,
    reached without following any symbolic link (``Beneath.open_file``)."""
    try:
        return beneath.open_file(relative)
    except SymlinkError:
        raise SourceError(f"{what}: a symbolic link, not followed") from None
    except NotRegularError as exc:
        raise SourceError(f"{what}: {exc.kind}, not a regular file") from None
    except OSError as exc:
        raise SourceError(f"{what}: {exc.strerror}") from None


def read_below(beneath: Beneath, relative: str, what: str, limit: int = MAX_MANIFEST) -> bytes:
    """A small file below a directory, reached without following a symlink."""
    return _read_small(_open_beneath(beneath, relative, what), what, limit)


def _read_small(fd: int, what: str, limit: int = MAX_MANIFEST) -> bytes:
    """All of a file of at most ``limit`` bytes (one byte more is read to tell)."""
    try:
        with open(fd, "rb", closefd=True) as f:
            payload = f.read(limit + 1)
    except OSError as exc:
        raise SourceError(f"{what}: {exc.strerror}") from None
    return bounded(payload, what, limit)


def _pick_from_index(index: dict, tag: str | None, where: str) -> dict:
    entries = index.get("manifests") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SourceError(f"{where}: its index's manifests are not a list of entries")
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
        if not os.path.isdir(directory):
            raise SourceError(f"{directory} is not an OCI image layout: not a directory")
        self.beneath = Beneath(os.path.abspath(directory))  # nothing below it is followed
        where = os.path.join(directory, "index.json")
        self.index = json_document(read_below(self.beneath, "/index.json", where), where)

    def _open_blob(self, digest: Digest) -> int:
        where = f"{self.description}: blob {digest}"
        return _open_beneath(self.beneath, f"/blobs/{digest.algorithm}/{digest.hex}", where)

    def top_manifest(self) -> Fetched:
        entry = _pick_from_index(self.index, self.tag, self.directory)
        digest = entry_digest(entry, self.directory)
        return verified(self.manifest(digest), digest)

    def manifest(self, digest: Digest) -> bytes:
        return _read_small(self._open_blob(digest), f"{self.description}: manifest {digest}")

    def blob(self, digest: Digest, offset: int = 0) -> Iterator[bytes]:
        fd = self._open_blob(digest)
        size = os.fstat(fd).st_size

        def chunks() -> Iterator[bytes]:
            try:
                yield from _read_fd_range(fd, f"{self.description}: blob {digest}", 0, size, offset)
            finally:
                os.close(fd)

        return chunks()


class ArchiveSource(ImageSource):
    """A ``docker save`` tarball: an OCI layout inside the tar (Docker 25 and later)
    or the older ``manifest.json`` form, whose schema2 manifest is made here from the
    config and the uncompressed layers."""

    def __init__(self, path: str, reference: str | None) -> None:
        self.path, self.reference = path, reference
        self.description = f"docker-archive:{path}"
        self.members: dict[str, tuple[int, int]] = {}  # name -> (offset, size)
        self.links: set[str] = set()  # symlinks, hardlinks and the like: never followed
        try:
            with tarfile.open(path, "r:") as tar:
                for member in tar:
                    name = _member_name(member.name, path)
                    if member.isfile():
                        self.members[name] = (member.offset_data, member.size)
                    elif not member.isdir():
                        self.links.add(name)
        except (OSError, tarfile.TarError) as exc:
            raise SourceError(f"{path} is not an uncompressed tar archive: {exc}") from None
        self.by_digest: dict[Digest, str] = {}
        self.made: Fetched | None = None
        if "index.json" in self.members:
            pass  # an OCI layout inside: blobs are found by their digest's name
        elif "manifest.json" in self.members:
            self.made = self._legacy_manifest()
        else:
            raise SourceError(f"{path} holds neither index.json nor manifest.json")

    def _member(self, name: object) -> tuple[int, int]:
        """(offset, size) of a regular member the image names."""
        if not isinstance(name, str):
            raise SourceError(f"{self.path}: a member name that is no string: {name!r}")
        name = _member_name(name, self.path)
        if name in self.links:
            raise SourceError(f"{self.path}: {name} is a link, not followed")
        if name not in self.members:
            raise SourceError(f"{self.path}: no member {name}")
        return self.members[name]

    def _member_bytes(self, name: object, limit: int = MAX_MANIFEST) -> bytes:
        offset, size = self._member(name)
        if size > limit:
            raise SourceError(f"{self.path}: {name} is larger than {limit} bytes: refused")
        return b"".join(_read_range(self.path, offset, size, 0))

    def _legacy_manifest(self) -> Fetched:
        try:
            images = json.loads(self._member_bytes("manifest.json"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SourceError(f"{self.path}: manifest.json is not JSON: {exc}") from None
        if not isinstance(images, list) or not all(isinstance(i, dict) for i in images):
            raise SourceError(f"{self.path}: manifest.json is not a list of images")
        if self.reference is None:
            if len(images) != 1:
                raise SourceError(f"{self.path} holds {len(images)} images; name one")
            image = images[0]
        else:
            wanted = [i for i in images if self.reference in (i.get("RepoTags") or [])]
            if not wanted:
                raise SourceError(f"{self.path} has no image {self.reference!r}")
            image = wanted[0]
        if "Config" not in image or not isinstance(image.get("Layers"), list):
            raise SourceError(f"{self.path}: manifest.json names no Config or no Layers")
        if len(image["Layers"]) > MAX_REFERENCES:
            raise SourceError(f"{self.path}: more than {MAX_REFERENCES} layers: refused")
        config = self._member_bytes(image["Config"], MAX_CONFIG)
        config_digest = Digest.of(config)
        self.by_digest[config_digest] = _member_name(image["Config"], self.path)
        layers = []
        for name in image["Layers"]:
            offset, size = self._member(name)
            digest = Digest("sha256", _sha256_of(_read_range(self.path, offset, size, 0)))
            self.by_digest[digest] = _member_name(name, self.path)
            layers.append({"mediaType": DOCKER_TAR_LAYER, "size": size, "digest": str(digest)})
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
        where = f"{self.path}: index.json"
        index = json_document(self._member_bytes("index.json"), where)
        digest = entry_digest(_pick_from_index(index, self.reference, self.path), where)
        return verified(self.manifest(digest), digest)

    def _name_of(self, digest: Digest) -> str:
        name = self.by_digest.get(digest, f"blobs/{digest.algorithm}/{digest.hex}")
        if name not in self.members and name not in self.links:
            raise SourceError(f"{self.description}: no blob {digest}")
        return name

    def manifest(self, digest: Digest) -> bytes:
        return self._member_bytes(self._name_of(digest))

    def blob(self, digest: Digest, offset: int = 0) -> Iterator[bytes]:
        return _read_range(self.path, *self._member(self._name_of(digest)), offset)


def _member_name(name: str, archive: str) -> str:
    """A member's name as the image names it (``./a`` is ``a``); an absolute name or
    one with ``..`` is refused, as no image member has one."""
    if name.startswith("/") or ".." in name.split("/"):
        raise SourceError(f"{archive}: member {name!r} points outside the archive: refused")
    return posixpath.normpath(name).lstrip("/") if name not in ("", ".") else name


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
