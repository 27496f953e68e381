"""Registry semantics over a driver: digests, links, blobs, uploads, manifests, tags.

Nothing here knows FUSE; everything here writes what docker-registry 2.8 writes.
"""

from .blobs import BlobInfo, BlobReader, BlobStore
from .digest import ALGORITHMS, CANONICAL, EMPTY_SHA256, Digest
from .errors import (
    BlobUnknownError,
    DigestMismatchError,
    InvalidDigestError,
    InvalidLinkError,
    InvalidNameError,
    InvalidOffsetWriteError,
    InvalidTagError,
    ManifestBlobsUnknownError,
    ManifestInvalidError,
    ManifestUnknownError,
    RegistryError,
    SizeMismatchError,
    TagUnknownError,
    UnsupportedAlgorithmError,
    UploadClosedError,
    UploadUnknownError,
)
from .hashstate import ResumableSha256
from .manifests import Descriptor, Manifest, parse_manifest
from .reference import validate_name, validate_tag
from .registry import Registry, Repository
from .uploads import Upload

__all__ = [
    "ALGORITHMS",
    "CANONICAL",
    "EMPTY_SHA256",
    "BlobInfo",
    "BlobReader",
    "BlobStore",
    "BlobUnknownError",
    "Descriptor",
    "Digest",
    "DigestMismatchError",
    "InvalidDigestError",
    "InvalidLinkError",
    "InvalidOffsetWriteError",
    "InvalidNameError",
    "InvalidTagError",
    "Manifest",
    "ManifestBlobsUnknownError",
    "ManifestInvalidError",
    "ManifestUnknownError",
    "Registry",
    "RegistryError",
    "Repository",
    "ResumableSha256",
    "SizeMismatchError",
    "TagUnknownError",
    "UnsupportedAlgorithmError",
    "Upload",
    "UploadClosedError",
    "UploadUnknownError",
    "parse_manifest",
    "validate_name",
    "validate_tag",
]
