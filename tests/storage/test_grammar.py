"""Digests, repository names, tags and link files: what is accepted, what is refused."""

from __future__ import annotations

import hashlib

import pytest

from layerfs.drivers import StorageDriver
from layerfs.storage import (
    Digest,
    InvalidDigestError,
    InvalidLinkError,
    InvalidNameError,
    InvalidTagError,
    UnsupportedAlgorithmError,
    paths,
    validate_name,
    validate_tag,
)
from layerfs.storage.links import encode_link, read_link, write_link

HEX256 = hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512"])
def test_digest_round_trip(algorithm: str) -> None:
    hexpart = hashlib.new(algorithm, b"layerfs").hexdigest()
    digest = Digest.parse(f"{algorithm}:{hexpart}")
    assert (digest.algorithm, digest.hex) == (algorithm, hexpart)
    assert str(digest) == f"{algorithm}:{hexpart}"
    assert Digest.of(b"layerfs", algorithm) == digest
    # a blob's data path names its digest, and no other path names a blob's
    assert paths.digest_of_blob_data(paths.blob_data(digest)) == digest
    assert paths.digest_of_blob_data(paths.blob_dir(digest)) is None
    assert paths.digest_of_blob_data(paths.layer_link("app", digest)) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        "sha256:",
        f"sha256:{HEX256[:-1]}",  # too short
        f"sha256:{HEX256}0",  # too long
        f"sha256:{HEX256.upper()}",  # upper case hex
        f"SHA256:{HEX256}",
        f"sha256:{HEX256[:-1]}g",
        f" sha256:{HEX256}",
        f"sha256:{HEX256}\n",
        f"sha256:{hashlib.sha384(b'').hexdigest()}",  # length of another algorithm
    ],
)
def test_malformed_digests(text: str) -> None:
    with pytest.raises(InvalidDigestError):
        Digest.parse(text)


@pytest.mark.parametrize("text", [f"md5:{'0' * 32}", f"sha1:{'a' * 40}", f"blake3:{HEX256}"])
def test_unknown_algorithms(text: str) -> None:
    with pytest.raises(UnsupportedAlgorithmError) as info:
        Digest.parse(text)
    assert text.split(":")[0] in str(info.value)


@pytest.mark.parametrize(
    "name",
    ["a", "library/ubuntu", "a0/b-c/d__e/f.g", "x--y", "a" * 255, "/".join(["ab"] * 85)],
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Upper",
        "library/Ubuntu",
        "..",
        "a/../b",
        "a/./b",
        "/leading",
        "trailing/",
        "a//b",
        "a__-b",
        "-a",
        "a-",
        "a___b",
        "a..b",
        "a" * 256,
        "/".join(["ab"] * 86),  # 257 characters
        "repo/_uploads",
        "repo/_layers/x",
        "sp ace",
        "a:b",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_name(name)


@pytest.mark.parametrize("tag", ["latest", "v1.0", "_x", "A-b_c.d", "a" * 128])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".hidden", "-x", "a" * 129, "a/b", "a:b", "sp ace", "é"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(InvalidTagError):
        validate_tag(tag)


async def test_link_is_digest_without_newline(driver: StorageDriver) -> None:
    digest = Digest.parse(f"sha256:{HEX256}")
    await write_link(driver, "/l/link", digest)
    assert await driver.get_content("/l/link") == f"sha256:{HEX256}".encode()
    assert encode_link(digest) == f"sha256:{HEX256}".encode()
    assert await read_link(driver, "/l/link") == digest


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage", f"sha256:{HEX256}\n".encode(), b"\xff\xfe", f"md5:{'0' * 32}".encode()],
)
async def test_links_that_do_not_parse(driver: StorageDriver, content: bytes) -> None:
    await driver.put_content("/l/link", content)
    with pytest.raises(InvalidLinkError) as info:
        await read_link(driver, "/l/link")
    assert "/l/link" in str(info.value)
