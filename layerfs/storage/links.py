"""Link files: a digest, as text, with no newline (``sha256:<hex>``)."""

from __future__ import annotations

from ..drivers import StorageDriver
from .digest import Digest
from .errors import InvalidDigestError, InvalidLinkError


def encode_link(target: Digest) -> bytes:
    return str(target).encode("ascii")


def decode_link(path: str, content: bytes, expected: Digest | None = None) -> Digest:
    """Parse a link file's content; a file that is not exactly a digest is refused.
    Content that spells ``expected`` exactly is it, unparsed (a pass reads hundreds
    of thousands of links that name their own directory's digest)."""
    if expected is not None and content == f"{expected.algorithm}:{expected.hex}".encode():
        return expected
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidLinkError(f"link file {path} is not ASCII text") from None
    try:
        return Digest.parse(text)
    except InvalidDigestError as exc:
        raise InvalidLinkError(f"link file {path} does not hold a digest: {exc}") from None


async def read_link(driver: StorageDriver, path: str) -> Digest:
    """The digest a link names; PathNotFoundError passes through."""
    return decode_link(path, await driver.get_content(path))


async def write_link(driver: StorageDriver, path: str, target: Digest) -> None:
    await driver.put_content(path, encode_link(target))
