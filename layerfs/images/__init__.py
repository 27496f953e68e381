"""Images in and out of a store: sources, destinations, the transfer manager and
the copier that joins them to the storage core.

Locations are spelled as skopeo spells them: ``oci:DIR[:TAG]``,
``docker-archive:FILE[:REPO:TAG]`` and ``docker://HOST[:PORT]/REPO[:TAG|@DIGEST]``;
a bare directory is an OCI layout and a bare file a tarball.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .destinations import (
    ArchiveDestination,
    ImageDestination,
    OciLayoutDestination,
    RegistryDestination,
)
from .errors import RegistryHTTPError, TransientError
from .sources import ArchiveSource, ImageSource, OciLayoutSource, RegistrySource, SourceError

if TYPE_CHECKING:  # requests loads only for docker:// locations
    from .registry_client import RegistryClient

__all__ = [
    "ImageDestination",
    "ImageSource",
    "RegistryHTTPError",
    "SourceError",
    "TransientError",
    "open_destination",
    "open_source",
    "split_registry_reference",
]


def split_registry_reference(text: str) -> tuple[str, str, str]:
    """``HOST[:PORT]/REPO[:TAG|@DIGEST]`` -> (host, repository, tag or digest)."""
    host, _, rest = text.partition("/")
    if not rest:
        raise SourceError(f"docker://{text}: want docker://HOST/REPOSITORY[:TAG]")
    if "@" in rest:
        repository, _, reference = rest.partition("@")
    else:
        repository, _, reference = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    return host, repository, reference


def _path_and_ref(text: str) -> tuple[str, str | None]:
    path, _, ref = text.partition(":")
    return path, ref or None


def _registry_client(host: str, credentials: tuple[str, str] | None) -> RegistryClient:
    from .registry_client import RegistryClient  # loads requests: only when needed

    return RegistryClient(host, credentials)


def open_source(text: str, credentials: tuple[str, str] | None = None) -> ImageSource:
    if text.startswith("docker://"):
        host, repository, reference = split_registry_reference(text[len("docker://") :])
        return RegistrySource(_registry_client(host, credentials), repository, reference)
    if text.startswith("oci:"):
        return OciLayoutSource(*_path_and_ref(text[len("oci:") :]))
    if text.startswith("docker-archive:"):
        return ArchiveSource(*_path_and_ref(text[len("docker-archive:") :]))
    if os.path.isdir(text):
        return OciLayoutSource(text, None)
    if os.path.isfile(text):
        return ArchiveSource(text, None)
    raise SourceError(
        f"{text}: no such directory or file, and no oci:, docker-archive: or docker://"
    )


def open_destination(
    text: str, repo_tag: str, credentials: tuple[str, str] | None = None
) -> tuple[ImageDestination, str]:
    """The destination and the tag the image gets there (``repo_tag``'s by default)."""
    default_tag = repo_tag.rpartition(":")[2]
    if text.startswith("docker://"):
        host, repository, reference = split_registry_reference(text[len("docker://") :])
        tag = reference if ":" in text[len("docker://") :].partition("/")[2] else default_tag
        return RegistryDestination(_registry_client(host, credentials), repository), tag
    if text.startswith("oci:"):
        path, tag = _path_and_ref(text[len("oci:") :])
        return OciLayoutDestination(path), tag or default_tag
    if text.startswith("docker-archive:"):
        path, ref = _path_and_ref(text[len("docker-archive:") :])
        return ArchiveDestination(path, ref or repo_tag), default_tag
    if text.endswith(".tar"):
        return ArchiveDestination(text, repo_tag), default_tag
    return OciLayoutDestination(text), default_tag
