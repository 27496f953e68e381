"""The store's walks (storage/walk.py): what fits the layout, and each odd entry
handed to the hook with its reason."""

from __future__ import annotations

from layerfs.drivers import MemoryDriver
from layerfs.storage import Digest, Registry, paths, walk

D = Digest.of(b"blob")


class Odd:
    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    async def __call__(self, path: str, why: str) -> None:
        self.seen[path] = why


async def test_blob_dirs() -> None:
    driver = MemoryDriver()
    await Registry(driver).blobs.put(b"blob")
    blobs = paths.BLOBS
    await driver.put_content(f"{blobs}/md5/aa/x/data", b"")
    await driver.put_content(f"{blobs}/sha256/zz/{D.hex}/data", b"")
    await driver.put_content(f"{blobs}/sha256/{D.hex[:2]}/nothex/data", b"")
    odd = Odd()
    assert await walk.blob_dirs(driver, odd) == [(D, paths.blob_dir(D))]
    assert odd.seen == {
        f"{blobs}/md5": "not a digest algorithm",
        f"{blobs}/sha256/zz/{D.hex}": "blob directory under the wrong prefix",
        f"{blobs}/sha256/{D.hex[:2]}/nothex": "not a blob directory (name is no digest)",
    }
    assert await walk.blob_dirs(driver) == [(D, paths.blob_dir(D))]  # odd ones skipped


async def test_digest_dirs_upload_ids_and_hash_states() -> None:
    driver = MemoryDriver()
    repo = Registry(driver).repository("r")
    await driver.put_content(paths.layer_link("r", D), str(D).encode())
    await driver.put_content(f"{paths.layers_dir('r')}/sha256/short/link", b"")
    upload = await repo.uploads.create()
    await upload.write(b"abc")
    await upload.close()
    await driver.put_content(f"{paths.uploads_dir('r')}/not-an-id/x", b"")
    await driver.put_content(paths.upload_hash_states("r", upload.id, "sha256") + "/x1", b"")
    odd = Odd()
    assert await walk.digest_dirs(driver, paths.layers_dir("r"), odd) == [
        (D, paths.layer_link("r", D).rsplit("/", 1)[0])
    ]
    assert await walk.upload_ids(driver, "r", odd) == [upload.id]
    states = await walk.hash_states(driver, "r", upload.id, odd)
    assert sorted(states) == [3]
    assert sorted(odd.seen.values()) == [
        "name is not an offset",
        "not a digest directory",
        "not an upload directory",
    ]


async def test_uploads_by_name() -> None:
    driver = MemoryDriver()
    uploads = Registry(driver).repository("r").uploads
    made = [await uploads.create() for _ in range(4)]
    ids = sorted(u.id for u in made)
    await uploads.set_name(ids[0], "same")
    await uploads.set_name(ids[1], "same")  # two creators at once: the smaller id wins
    await uploads.set_name(ids[2], "bad name")  # no file name: shows under its id
    assert await uploads.by_name() == {
        "same": ids[0],
        ids[1]: ids[1],
        ids[2]: ids[2],
        ids[3]: ids[3],
    }


async def test_digest_dirs_from_a_packed_snapshot_are_the_drivers() -> None:
    """From a snapshot that packs the hex-named directories, ``digest_dirs`` gives what
    the driver's own listing gives, in the same order, with the same odd entries."""
    from layerfs.passes.readahead import Snapshot

    driver = MemoryDriver()
    layers = paths.layers_dir("r")
    # the file (digests[4]) sorts before the packed directories
    digests = sorted(Digest.of(bytes([i])) for i in range(5))
    digests = [*digests[1:], digests[0], Digest.of(b"upper")]
    for d in digests[:4]:
        await driver.put_content(paths.layer_link("r", d), str(d).encode())
    await driver.put_content(f"{layers}/sha256/{digests[4].hex}", b"a file, not packed")
    await driver.put_content(f"{layers}/sha256/{digests[5].hex.upper()}/link", b"")
    await driver.put_content(f"{layers}/sha256/short/link", b"")
    await driver.put_content(f"{layers}/sha512/{'ab' * 64}/link", b"")
    snapshot = await Snapshot.read(driver, "/", lambda path: True)
    assert snapshot.packed_listing(f"{layers}/sha256").hex_count() == 4
    from_driver, from_snapshot = Odd(), Odd()
    expected = await walk.digest_dirs(driver, layers, from_driver)
    assert await walk.digest_dirs(snapshot, layers, from_snapshot) == expected
    assert from_snapshot.seen == from_driver.seen and len(from_driver.seen) == 2
    assert [d for d, _ in expected] == sorted(
        [*digests[:5], Digest("sha512", "ab" * 64)], key=lambda d: (d.algorithm, d.hex)
    )
