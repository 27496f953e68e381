"""The fs layer without the kernel: errno translation and path classification."""

from __future__ import annotations

import errno
import logging
import typing

import pyfuse3
import pytest
import trio

from layerfs.drivers import BackendUnavailableError, MemoryDriver, PathNotFoundError
from layerfs.fs.errors import Refusal, fuse_handler
from layerfs.fs.inodes import InodeTable
from layerfs.fs.kinds import PathKind
from layerfs.fs.mount import MountError, parse_options, parse_size
from layerfs.fs.operations import Operations
from layerfs.fs.state import Handle
from layerfs.fs.view import Kind, classify, rename_target
from layerfs.storage import Digest, paths
from layerfs.storage import errors as se
from layerfs.storage.store import Store

D = Digest.of(b"x")
UPLOADS = ("repositories", "r", "_uploads")


@pytest.mark.parametrize(
    "exc, code",
    [
        (se.DigestMismatchError(D, D), errno.EBADMSG),
        (se.InvalidNameError("x"), errno.EINVAL),
        (se.InvalidDigestError("x"), errno.EINVAL),
        (se.ManifestBlobsUnknownError([D]), errno.EINVAL),
        (se.BlobUnknownError(D), errno.ENOENT),
        (PathNotFoundError("/x"), errno.ENOENT),
        (BackendUnavailableError("down"), errno.EIO),
        (Refusal(errno.EROFS, "read-only"), errno.EROFS),
        (ZeroDivisionError("a bug"), errno.EIO),
        (KeyError("a bug"), errno.EIO),
    ],
)
async def test_every_exception_becomes_fuse_error(
    exc: Exception, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    @fuse_handler
    async def handler() -> None:
        raise exc

    caplog.set_level(logging.DEBUG)
    with pytest.raises(pyfuse3.FUSEError) as info:
        await handler()
    assert info.value.errno == code
    assert "handler" in caplog.text  # a sentence in the log, naming the request
    if isinstance(exc, ZeroDivisionError | KeyError):
        assert "Traceback" in caplog.text


@pytest.mark.parametrize(
    "path, kind, repository",
    [
        ("", Kind.ROOT, ""),
        ("blobs/sha256/ab", Kind.BLOB_DIR, ""),
        (f"blobs/sha256/{D.hex[:2]}/{D.hex}/data", Kind.BLOB_DATA, ""),
        ("repositories/a/b", Kind.NAMESPACE, "a/b"),
        ("repositories/a/b/_uploads", Kind.UPLOADS, "a/b"),
        ("repositories/a/b/_uploads/x.tar", Kind.UPLOAD, "a/b"),
        ("repositories/a/_uploads/x/data", Kind.OTHER, "a"),
        (f"repositories/a/_layers/sha256/{D.hex}/link", Kind.LAYER_LINK, "a"),
        (f"repositories/a/_manifests/revisions/sha256/{D.hex}/link", Kind.REVISION_LINK, "a"),
        ("repositories/a/_manifests/tags/v1/current/link", Kind.TAG_LINK, "a"),
        (f"repositories/a/_manifests/tags/v1/index/sha256/{D.hex}/link", Kind.TAG_INDEX_LINK, "a"),
        ("repositories/_uploads", Kind.OTHER, ""),
        ("elsewhere", Kind.OTHER, ""),
    ],
)
def test_classify(path: str, kind: Kind, repository: str) -> None:
    place = classify(tuple(path.split("/")) if path else ())
    assert place.kind == kind
    assert place.repository == repository


def test_inodes_live_until_forget() -> None:
    table = InodeTable()
    ino = table.ino(("repositories", "a"))
    table.remember(ino)
    table.remember(ino)
    table.forget(ino, 1)
    assert table.path(ino) == ("repositories", "a")
    table.move(("repositories", "a"), ("repositories", "b"))
    assert table.path(ino) == ("repositories", "b")
    table.forget(ino, 1)
    with pytest.raises(Refusal):
        table.path(ino)


def test_mount_options_for_an_s3_store() -> None:
    parsed = parse_options(
        "ro,endpoint=http://127.0.0.1:8333,region=eu-west-1,profile=ops,part_size=16M"
    )
    assert parsed.read_only and "ro" in parsed.fuse
    assert parsed.s3 == {
        "endpoint": "http://127.0.0.1:8333",
        "region": "eu-west-1",
        "profile": "ops",
        "part_size": 16 << 20,
    }
    assert parse_options("allow_other").s3 == {}


@pytest.mark.parametrize(
    "text, size", [("6291456", 6 << 20), ("6M", 6 << 20), ("6MiB", 6 << 20), ("2g", 2 << 30)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("option", ["part_size=big", "part_size=5T", "part_size=-5M", "region="])
def test_bad_s3_mount_options_are_refused(option: str) -> None:
    with pytest.raises(MountError, match="mount option"):
        parse_options(option)


@pytest.mark.parametrize("kind", sorted(paths.LAYOUT))
def test_the_layout_table_serves_both_directions(kind: str) -> None:
    fields = {"name": "a/b", "alg": "sha256", "hh": D.hex[:2], "hex": D.hex, "tag": "v1",
              "upload": "0" * 8 + "-0000-0000-0000-" + "0" * 12, "offset": "42"}  # fmt: skip
    wanted = {f[1:-1] for f in paths.LAYOUT[kind] if f.startswith("{")}
    built = paths.path(kind, **{k: v for k, v in fields.items() if k in wanted})
    parts = tuple(built[len(paths.ROOT) + 1 :].split("/"))
    found = paths.match(parts)
    assert found is not None and found.kind == kind and not found.is_dir
    assert found.fields == {k: v for k, v in fields.items() if k in wanted}
    assert paths.match(parts[:-1]).is_dir  # type: ignore[union-attr]


def test_paths_the_layout_has_no_place_for() -> None:
    assert paths.match(("repositories", "a", "_manifests", "other")) is None
    assert paths.match(("repositories", "_layers")) is None
    assert paths.match(("elsewhere",)) is None


async def test_every_kind_and_every_handle_has_one_handler() -> None:
    async with trio.open_nursery() as nursery:
        ops = Operations(Store(MemoryDriver()), nursery)
        assert set(ops.kinds) == set(Kind)
        assert all(isinstance(handler, PathKind) for handler in ops.kinds.values())
        assert set(ops.owners) == set(typing.get_args(Handle))
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "parent, name, kind",
    [
        (UPLOADS, f"sha256:{'a' * 64}", Kind.FINISH),
        (UPLOADS, "sha256:not-hex", Kind.FINISH),  # refused by the finish's parse, EINVAL
        (UPLOADS, "plain", Kind.UPLOAD),
        (("repositories", "r", "_layers"), f"sha256:{'a' * 64}", Kind.LINK_DIR),
        (("blobs",), f"sha256:{'a' * 64}", Kind.BLOB_DIR),
    ],
)
def test_a_digest_in_an_uploads_directory_is_a_finish(
    parent: tuple[str, ...], name: str, kind: Kind
) -> None:
    assert rename_target(parent, name.encode()).kind == kind


@pytest.mark.parametrize(
    "name, code", [(b"bad name", errno.EINVAL), (b"x" * 256, errno.ENAMETOOLONG)]
)
def test_a_plain_rename_target_must_be_storable(name: bytes, code: int) -> None:
    with pytest.raises(Refusal) as refused:
        rename_target(UPLOADS, name)
    assert refused.value.errno == code
