"""The packed forms a whole-store pass holds: a directory's listing with its
hex-named directories as raw bytes (``TreeListing``) and gc's marks a byte a blob
(``BlobMarks``). Each is checked against the plain form it replaces, on drawn
entries: same entries in the same order, same answers."""

from __future__ import annotations

import hashlib

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from layerfs.drivers import MemoryDriver
from layerfs.drivers.base import TreeEntry
from layerfs.drivers.treelisting import TreeListing
from layerfs.passes.blobtable import BlobMarks, BlobTable, Numbering
from layerfs.passes.readahead import Snapshot
from layerfs.storage import paths, walk
from layerfs.storage.digest import Digest

HEXES = st.integers(0, 40).map(lambda i: hashlib.sha256(bytes([i])).hexdigest())
NAMES = st.one_of(
    HEXES,
    HEXES.map(str.upper),  # not packed: a digest is lowercase
    HEXES.map(lambda h: h[:63]),
    st.sampled_from(["link", "data", "current", "_layers", "a", "sha256"]),
)


@st.composite
def entries(draw: st.DrawFn, directory: str) -> list[TreeEntry]:
    names = draw(st.lists(NAMES, unique=True, max_size=30))
    prefix = "" if directory == "/" else directory
    found = []
    for name in names:
        kind = draw(st.sampled_from(["dir", "file", "odd", "sized", "etag"]))
        path = f"{prefix}/{name}"
        found.append({
            "dir": TreeEntry(path, True),
            "file": TreeEntry(path, False),
            "odd": TreeEntry(path, False, "a symbolic link, not followed"),
            "sized": TreeEntry(path, False, "", 12),
            "etag": TreeEntry(path, False, "", 12, "0" * 32),
        }[kind])  # fmt: skip
    return found


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["/", "/x/_layers/sha256"]).flatmap(lambda d: st.tuples(st.just(d), entries(d)))
)
def test_a_packed_listing_is_the_listing_it_packs(drawn: tuple[str, list[TreeEntry]]) -> None:
    directory, plain = drawn
    listing = TreeListing.of(directory, reversed(plain))
    assert list(listing) == sorted(plain)
    assert listing == sorted(plain) and len(listing) == len(plain)
    assert listing.paths() == [e.path for e in sorted(plain)]
    prefix = "" if directory == "/" else directory
    by_name = {e.path[len(prefix) + 1 :]: e for e in plain}
    for name in [*by_name, "missing", "f" * 64, "0" * 64]:
        assert listing.find(name) == by_name.get(name)
    packed = [e for e in sorted(plain) if e.is_dir and len(e.path) - len(prefix) == 65
              and e.path[-64:].islower()]  # fmt: skip
    assert list(listing.hex_names()) == [e.path[-64:] for e in packed]
    for position, entry in enumerate(packed):
        assert listing.index_of(bytes.fromhex(entry.path[-64:])) == position
    unpacked = {bytes.fromhex(h) for h in ("f" * 64, "0" * 64)} - {
        bytes.fromhex(e.path[-64:]) for e in packed
    }
    for raw in unpacked:
        assert listing.index_of(raw) == -1 and not listing.holds_hex(raw)


def _stated(table: BlobTable) -> list[tuple[int, str]]:
    """The number and data path of each blob a pass states: the packed runs' (paths
    as the driver makes them, ``file_sizes_in``) and the other items'."""
    found = [
        (first + k, f"{directory}/{values[k * 32 : k * 32 + 32].hex()}{paths.BLOB_DATA_BELOW}")
        for directory, values, first in table.packed_runs()
        for k in range(len(values) // 32)
    ]
    found += [(i, paths.blob_data(d)) for i, d in table.other_items()]
    return sorted(found)


def test_a_blob_under_the_wrong_prefix_is_stated_by_no_one() -> None:
    """A blob directory under another prefix than its hex's is no blob of the store
    (the registry looks for it under its own): it has a number, but neither the
    runs nor the others hold it, so no size is stated for it."""
    digests = sorted(Digest.of(bytes([i])) for i in range(20))
    wrong = digests[5]
    elsewhere = f"{int(wrong.hex[:2], 16) ^ 1:02x}"  # another valid prefix

    async def run() -> None:
        driver = MemoryDriver()
        for d in digests:
            if d != wrong:
                await driver.put_content(paths.blob_data(d), b"x")
        await driver.put_content(f"{paths.BLOBS}/sha256/{elsewhere}/{wrong.hex}/data", b"x")
        table = BlobTable(await walk.blob_prefixes(await Snapshot.read(driver)))
        assert table.size == len(digests)
        expected = [(table.index(d), paths.blob_data(d)) for d in digests if d != wrong]
        assert _stated(table) == sorted(expected)

    trio.run(run)


@settings(max_examples=100, deadline=None)
@given(
    stored=st.sets(st.integers(0, 60), max_size=40),
    odd=st.sets(st.integers(0, 60), max_size=3),
    marked=st.lists(st.integers(0, 80), max_size=60),
)
def test_blob_marks_answer_as_sets_do(stored: set[int], odd: set[int], marked: list[int]) -> None:
    """Blobs stored as the layout has them (and a few hex-named files, which are not
    packed), some of them marked and some digests marked that are not stored."""
    digest = {i: Digest.of(bytes([i])) for i in range(81)}

    async def run() -> None:
        driver = MemoryDriver()
        for i in stored:
            await driver.put_content(paths.blob_data(digest[i]), b"x")
        for i in odd - stored:  # a file where a blob directory belongs
            await driver.put_content(paths.blob_dir(digest[i]), b"x")
        snapshot = await Snapshot.read(driver)
        listed = {d for d, _ in await walk.blob_dirs(snapshot)}
        assert listed == {digest[i] for i in stored | odd}
        table = BlobTable(await walk.blob_prefixes(snapshot))
        numbered = list(table)
        assert [d for _, d in numbered] == sorted(listed)
        assert sorted(i for i, _ in numbered) == list(range(table.size))
        assert all(table.index(d) == i for i, d in numbered)
        assert [item for chunk in table.chunks(3) for item in chunk] == numbered
        made = [paths.blob_data_maker(d.algorithm)(d.hex) for _, d in numbered]
        assert made == [paths.blob_data(d) for _, d in numbered]
        assert _stated(table) == sorted((i, paths.blob_data(d)) for i, d in numbered)
        marks = BlobMarks(Numbering(table))
        model: set[Digest] = set()
        for i in marked:
            marks.add(digest[i])
            model.add(digest[i])
            assert len(marks) == len(model)
        for d in digest.values():
            assert (d in marks) == (d in model)
            assert marks.listed(d) == (d in listed)
        assert list(marks.unmarked()) == sorted(listed - model)

    trio.run(run)


def test_values_sharing_their_first_bytes_are_told_apart() -> None:
    """The search orders by the first 8 bytes, then compares whole values."""
    raws = [bytes(8) + bytes([i]) * 24 for i in (9, 3, 7)] + [b"\x01" * 32]
    listing = TreeListing.packed("/d", list(raws), [])
    ordered = sorted(raws)
    for position, raw in enumerate(ordered):
        assert listing.index_of(raw) == position
    assert listing.index_of(bytes(8) + bytes([5]) * 24) == -1
    assert listing.index_of(bytes(32)) == -1
    assert listing.index_of(b"\xff" * 32) == -1


@settings(max_examples=60, deadline=None)
@given(
    sha256=st.sets(st.integers(0, 40), max_size=12),
    sha512=st.sets(st.integers(0, 5), max_size=3),
    odd=st.sets(st.sampled_from(["nothex", "ABCD", "sha1"]), max_size=2),
)
def test_digest_dir_values_are_digest_dirs(
    sha256: set[int], sha512: set[int], odd: set[str]
) -> None:
    """A repository's layer links as raw values and digests are the ones digest_dirs
    walks, from a snapshot (packed) and from the driver itself."""

    async def run() -> None:
        driver = MemoryDriver()
        digests = [Digest.of(bytes([i])) for i in sha256]
        digests += [Digest.of(bytes([i]), "sha512") for i in sha512]
        for digest in digests:
            await driver.put_content(paths.layer_link("r", digest), str(digest).encode())
        for name in odd:
            await driver.put_content(f"{paths.layers_dir('r')}/sha256/{name}/link", b"x")
        expected = sorted(d for d, _ in await walk.digest_dirs(driver, paths.layers_dir("r")))
        assert expected == sorted(digests)
        for lister in (driver, await Snapshot.read(driver)):
            raws, others = await walk.digest_dir_values(lister, paths.layers_dir("r"))
            found = [Digest("sha256", raw.hex()) for raw in raws] + others
            assert sorted(found) == expected

    trio.run(run)
