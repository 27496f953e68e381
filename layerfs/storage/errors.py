"""Registry-level errors. The fs layer maps each to one errno in one place."""

from __future__ import annotations

# The store's own errors, as its drivers raise them: storage passes them up, and the
# view maps them to errno values knowing no driver.
from ..drivers import BackendUnavailableError as BackendUnavailableError
from ..drivers import FileChangedError as FileChangedError
from ..drivers import InvalidOffsetError as InvalidOffsetError
from ..drivers import InvalidPathError as InvalidPathError
from ..drivers import PathNotFoundError as PathNotFoundError
from ..drivers import StorageDriverError as StorageDriverError
from ..drivers import StoreFullError as StoreFullError
from ..drivers import StoreReadOnlyError as StoreReadOnlyError
from ..drivers import UnsafeEntryError as UnsafeEntryError


class RegistryError(Exception):
    """Base of every error the storage layer raises on purpose."""


class InvalidNameError(RegistryError):
    """A repository name that breaks the grammar."""


class InvalidTagError(RegistryError):
    """A tag that breaks the grammar."""


class InvalidDigestError(RegistryError):
    """A digest that does not parse, or names an unknown algorithm."""


class UnsupportedAlgorithmError(InvalidDigestError):
    """A well-formed digest of an algorithm the registry does not know."""


class InvalidLinkError(RegistryError):
    """A link file whose content is not a digest."""


class BlobUnknownError(RegistryError):
    def __init__(self, digest: object) -> None:
        super().__init__(f"blob unknown: {digest}")
        self.digest = digest


class DigestMismatchError(RegistryError):
    """The content does not hash to the digest it was given."""

    def __init__(self, expected: object, actual: object) -> None:
        super().__init__(f"digest mismatch: expected {expected}, content is {actual}")
        self.expected = expected
        self.actual = actual


class SizeMismatchError(RegistryError):
    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"size mismatch: expected {expected} bytes, found {actual}")
        self.expected = expected
        self.actual = actual


class UploadUnknownError(RegistryError):
    def __init__(self, upload_id: str) -> None:
        super().__init__(f"upload unknown: {upload_id}")
        self.upload_id = upload_id


class UploadClosedError(RegistryError):
    """The upload was finished or cancelled and takes no more calls."""


class UploadBusyError(RegistryError):
    """Another writer holds the upload, or its finish is under way (maps to EBUSY)."""


class InvalidOffsetWriteError(RegistryError):
    """A write that does not append at the current end of an upload."""

    def __init__(self, upload_id: str, offset: int, end: int) -> None:
        super().__init__(
            f"upload {upload_id}: write at offset {offset}, but its end is at {end};"
            " uploads only grow at their end"
        )
        self.offset, self.end = offset, end


class ManifestInvalidError(RegistryError):
    """A document that is not a manifest this registry accepts."""


class ManifestBlobsUnknownError(RegistryError):
    """A manifest names blobs or manifests this repository does not hold."""

    def __init__(self, missing: list[object]) -> None:
        names = ", ".join(str(d) for d in missing)
        super().__init__(f"manifest references unknown blobs: {names}")
        self.missing = missing


class ManifestUnknownError(RegistryError):
    def __init__(self, ref: object) -> None:
        super().__init__(f"manifest unknown: {ref}")
        self.ref = ref


class TagUnknownError(RegistryError):
    def __init__(self, tag: str) -> None:
        super().__init__(f"tag unknown: {tag}")
        self.tag = tag
