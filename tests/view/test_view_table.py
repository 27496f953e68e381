"""One test per row of the README's view table (tests/project/test_docs.py checks that each
row names its test and each test here is named by a row), on Operations without the
kernel; tests/mount/test_mount.py checks the same rows through a kernel mount."""

from __future__ import annotations

import errno
import os

import pyfuse3
import pytest

from layerfs.drivers import MemoryDriver
from layerfs.storage import Digest, Registry

from ..fsops import Errno, Kernel, context, mounted
from ..images import make_image

R = "repositories/r"
UP = f"{R}/_uploads"
DATA = os.urandom(100_000)


async def errno_of(call) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(Errno) as info:
        await call
    return info.value.errno


async def finished(k: Kernel, data: bytes, name: str = "x") -> Digest:
    await k.write_file(f"{UP}/{name}", data)
    digest = Digest.of(data)
    await k.rename(f"{UP}/{name}", f"{UP}/{digest}")
    return digest


async def write_link(k: Kernel, folder: str, content: bytes) -> None:
    await k.makedirs(folder)
    await k.write_file(f"{folder}/link", content)


@pytest.fixture
async def k():  # type: ignore[no-untyped-def]
    async with mounted(MemoryDriver()) as kernel:
        await kernel.makedirs(R)
        yield kernel


async def test_blob_data(k: Kernel) -> None:
    digest = await finished(k, DATA)
    path = f"blobs/sha256/{digest.hex[:2]}/{digest.hex}/data"
    assert await k.read_file(path) == DATA
    assert (await k.stat(path)).st_mode & 0o777 == 0o444
    assert await errno_of(k.open(path, os.O_WRONLY)) == errno.EPERM
    assert await errno_of(k.unlink(path)) == errno.EPERM


async def test_repository_directories(k: Kernel) -> None:
    await k.makedirs("repositories/a/b/c")
    assert sorted(await k.listdir("repositories/a/b/c")) == ["_layers", "_manifests", "_uploads"]
    for bad in ("Upper", "bad..name", "-lead", "_layers"):
        assert await errno_of(k.mkdir(f"repositories/{bad}")) == errno.EINVAL
    assert await errno_of(k.mkdir(f"{R}/_manifests/other")) == errno.EPERM


async def test_uploads(k: Kernel) -> None:
    fh = await k.create(f"{UP}/x")
    await k.write(fh, 0, b"hello")
    assert await errno_of(k.write(fh, 2, b"no")) == errno.EINVAL  # before the end
    await k.write(fh, 8, b"!")  # past the end: the gap reads as zeros
    await k.close(fh)
    assert await k.read_file(f"{UP}/x") == b"hello\0\0\0!"
    await k.truncate(f"{UP}/x", 0)  # restarts
    assert await k.read_file(f"{UP}/x") == b""
    for offset, piece in ((0, b"again"), (5, b"+more")):  # cat >>, twice: resumes
        fh = await k.open(f"{UP}/x", os.O_WRONLY | os.O_APPEND)
        await k.write(fh, offset, piece)
        await k.close(fh)
    assert await k.read_file(f"{UP}/x") == b"again+more"
    await k.rename(f"{UP}/x", f"{UP}/y")
    await k.write_file(f"{UP}/z", b"other")
    assert await errno_of(k.rename(f"{UP}/y", f"{UP}/z", pyfuse3.RENAME_NOREPLACE)) == (
        errno.EEXIST
    )
    assert await k.listdir(UP) == ["y", "z"]
    await k.unlink(f"{UP}/y")  # cancels
    assert await k.listdir(UP) == ["z"]


async def test_finish_by_rename_to_the_digest(k: Kernel) -> None:
    await k.write_file(f"{UP}/x", DATA)
    wrong = Digest.of(DATA + b"?")
    assert await errno_of(k.rename(f"{UP}/x", f"{UP}/{wrong}")) == errno.EBADMSG
    assert await k.read_file(f"{UP}/x") == DATA  # the upload stays
    assert await errno_of(k.rename(f"{UP}/x", f"{UP}/sha256:nothex")) == errno.EINVAL
    digest = Digest.of(DATA)
    await k.rename(f"{UP}/x", f"{UP}/{digest}")
    assert await k.listdir(UP) == []
    assert await k.read_file(f"{R}/_layers/sha256/{digest.hex}/link") == str(digest).encode()


async def test_rename_into_another_repository(k: Kernel) -> None:
    await k.makedirs("repositories/other")
    await k.write_file(f"{UP}/x", b"abc")
    target = "repositories/other/_uploads/x"
    assert await errno_of(k.rename(f"{UP}/x", target)) == errno.EXDEV


async def test_a_rename_is_what_its_target_makes_it(k: Kernel) -> None:
    """Only an upload moves (its absence ENOENT first); then the target's kind decides:
    a digest outside the upload's own _uploads is no finish, and no kind but an
    upload or a finish takes an upload (EXDEV)."""
    digest = await finished(k, DATA)
    await k.write_file(f"{UP}/x", b"abc")
    hex_dir = f"blobs/sha256/{digest.hex[:2]}/{digest.hex}"
    assert await errno_of(k.rename(f"{hex_dir}/data", f"{UP}/y")) == errno.EPERM
    assert await errno_of(k.rename(f"{UP}/gone", f"{R}/_layers/y")) == errno.ENOENT
    for target in (f"{R}/_layers/{digest}", f"{R}/_layers/y", "blobs/y", f"{R}/{digest}"):
        assert await errno_of(k.rename(f"{UP}/x", target)) == errno.EXDEV, target
    assert await k.listdir(UP) == ["x"]


async def test_layer_links(k: Kernel) -> None:
    digest = await finished(k, DATA)
    await k.makedirs("repositories/other")
    folder = f"repositories/other/_layers/sha256/{digest.hex}"
    await write_link(k, folder, str(digest).encode())  # a cross-repository mount
    assert await k.read_file(f"{folder}/link") == str(digest).encode()
    unknown = Digest.of(b"never stored")
    bad = f"{R}/_layers/sha256/{unknown.hex}"
    assert await errno_of(write_link(k, bad, str(unknown).encode())) == errno.ENOENT
    assert await errno_of(write_link(k, bad, b"garbage\n")) == errno.EINVAL
    await k.unlink(f"{folder}/link")
    assert await errno_of(k.stat(f"{folder}/link")) == errno.ENOENT
    assert await k.read_file(f"{R}/_layers/sha256/{digest.hex}/link")  # the blob stays


async def push_image(k: Kernel) -> tuple[Digest, Digest]:
    image = make_image(7, layers=2)
    for i, blob in enumerate([*image.layers, image.config]):
        await finished(k, blob, f"b{i}")
    return await finished(k, image.manifest, "m"), Digest.of(image.layers[0])


async def test_revision_links(k: Kernel) -> None:
    manifest, layer = await push_image(k)
    folder = f"{R}/_manifests/revisions/sha256/{manifest.hex}"
    await k.unlink(f"{R}/_layers/sha256/{layer.hex}/link")
    # refused as bad content, with the missing digest on the directory that stays;
    # the directories mkdir -p made for it alone go with the refusal
    assert await errno_of(write_link(k, folder, str(manifest).encode())) == errno.EINVAL
    assert await errno_of(k.stat(folder)) == errno.ENOENT
    assert "sha256" not in await k.listdir(f"{R}/_manifests/revisions")
    reason = (await k.getxattr(f"{R}/_manifests/revisions", "user.layerfs.error")).decode()
    assert f"EINVAL: manifest references unknown blobs: {layer}" in reason
    assert folder in reason
    await write_link(k, f"{R}/_layers/sha256/{layer.hex}", str(layer).encode())
    await write_link(k, folder, str(manifest).encode())  # registers the manifest
    registry = k.ops.state.registry.repository("r")
    assert await registry.manifests.exists(manifest)
    await write_link(k, f"{R}/_manifests/tags/v1/current", str(manifest).encode())
    await k.unlink(f"{folder}/link")  # deletes the revision and its tags
    assert not await registry.manifests.exists(manifest)
    assert await registry.tags.list() == []


async def test_tag_links(k: Kernel) -> None:
    manifest, _ = await push_image(k)
    await write_link(k, f"{R}/_manifests/revisions/sha256/{manifest.hex}", str(manifest).encode())
    tags = f"{R}/_manifests/tags"
    await write_link(k, f"{tags}/v1/current", str(manifest).encode())
    history = f"{tags}/v1/index/sha256/{manifest.hex}/link"
    assert await k.read_file(history) == str(manifest).encode()  # written by tagging
    assert await errno_of(k.open(history, os.O_WRONLY)) == errno.EPERM
    registry = k.ops.state.registry.repository("r")
    assert await registry.tags.resolve("v1") == manifest
    await k.unlink(f"{tags}/v1/current/link")  # untags: the registry lists no v1
    assert await registry.tags.list() == []


async def test_names_and_special_files(k: Kernel) -> None:
    uploads, ctx = await k.walk(UP), context()
    assert await errno_of(k.call("lookup", uploads, b"n" * 256, ctx)) == errno.ENAMETOOLONG
    assert await errno_of(k.call("lookup", uploads, b"bad\nname", ctx)) == errno.ENOENT
    assert await errno_of(k.create(f"{UP}/{'n' * 256}")) == errno.ENAMETOOLONG
    assert await errno_of(k.create(f"{UP}/bad name")) == errno.EINVAL
    assert await errno_of(k.call("symlink", uploads, b"s", b"/etc", ctx)) == errno.EPERM
    assert await errno_of(k.call("mknod", uploads, b"n", 0o10644, 0, ctx)) == errno.EPERM


async def test_removed_while_open(k: Kernel) -> None:
    fh = await k.create(f"{UP}/x")
    await k.write(fh, 0, b"abc")
    await k.unlink(f"{UP}/x")
    assert await errno_of(k.write(fh, 3, b"def")) == errno.ESTALE
    assert await errno_of(k.flush(fh)) == errno.ESTALE
    await k.release(fh)


async def test_one_writer_per_upload(k: Kernel) -> None:
    k.ops.state.uploads.release_grace = 0.05  # no release is on its way here
    first = await k.create(f"{UP}/x")
    await k.write(first, 0, b"abc")
    assert await errno_of(k.open(f"{UP}/x", os.O_WRONLY | os.O_APPEND)) == errno.EBUSY
    assert (await k.getxattr(f"{UP}/x", "user.layerfs.error")).startswith(b"EBUSY")
    assert await errno_of(k.truncate(f"{UP}/x", 0)) == errno.EBUSY
    reader = await k.open(f"{UP}/x")  # readers are never refused
    await k.flush(first)  # closed, but not yet released: a second writer waits for it
    assert await errno_of(k.open(f"{UP}/x", os.O_WRONLY | os.O_APPEND)) == errno.EBUSY
    await k.release(first)
    second = await k.open(f"{UP}/x", os.O_WRONLY | os.O_APPEND)
    await k.write(second, 3, b"def")
    await k.close(second)
    assert await k.read(reader, 0, 10) == b"abcdef"
    await k.release(reader)


async def test_read_only_mount() -> None:
    driver = MemoryDriver()
    await Registry(driver).repository("r").layers.link(await Registry(driver).blobs.put(b"x"))
    async with mounted(driver, read_only=True) as k:
        assert await errno_of(k.create(f"{UP}/x")) == errno.EROFS
        assert await errno_of(k.mkdir("repositories/new")) == errno.EROFS
        assert await errno_of(k.unlink(f"{R}/_layers/sha256/{Digest.of(b'x').hex}/link")) == (
            errno.EROFS
        )


async def test_symlinks_in_the_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The store's writers put symbolic links where the layout has files and
    directories: each lists, and reads, writes and enters as EACCES."""
    from layerfs.drivers import FilesystemDriver

    root = tmp_path / "store"
    driver = FilesystemDriver(root)
    digest = await Registry(driver).blobs.put(DATA)
    await Registry(driver).repository("r").layers.link(digest)
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    v2 = root / "docker/registry/v2"
    data = v2 / f"blobs/sha256/{digest.hex[:2]}/{digest.hex}/data"
    data.unlink()
    data.symlink_to(secret)
    (v2 / "repositories/evil").symlink_to(tmp_path)
    async with mounted(driver) as k:
        blob = f"blobs/sha256/{digest.hex[:2]}/{digest.hex}/data"
        assert await errno_of(k.read_file(blob)) == errno.EACCES
        assert "evil" in await k.listdir("repositories")
        assert await errno_of(k.listdir("repositories/evil")) == errno.EACCES
        assert await errno_of(k.create("repositories/evil/_uploads/x")) == errno.EACCES
    assert secret.read_bytes() == b"secret" and sorted(os.listdir(tmp_path)) == [
        "secret",
        "store",
    ]


async def test_a_full_or_read_only_store_disk(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The store's own file system fills up or turns read-only (a 1 MiB tmpfs)."""
    import subprocess

    from layerfs.drivers import FilesystemDriver

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        async with mounted(FilesystemDriver(disk)) as k:
            await k.makedirs(R)
            fh = await k.create(f"{UP}/big")
            with pytest.raises(Errno) as full:
                for offset in range(0, 4 << 20, 1 << 20):
                    await k.write(fh, offset, os.urandom(1 << 20))
                await k.close(fh)
            assert full.value.errno == errno.ENOSPC
            subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
            await k.write_file(f"{UP}/small", b"hello")
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
            target = f"{UP}/{Digest.of(b'hello')}"
            assert await errno_of(k.rename(f"{UP}/small", target)) == errno.EROFS
            assert await errno_of(k.write_file(f"{UP}/other", b"x")) == errno.EROFS
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
