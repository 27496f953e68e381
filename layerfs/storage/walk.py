"""The walks of the store, one each: blob directories, digest directories below a
link directory, upload directories, an upload's hash states and uploads by name.

Each walk lists with a :class:`Lister`: the driver itself, or a snapshot of it that
a whole-store pass read in one go. Every walk returns what fits the layout
(``paths.LAYOUT``) in lexical order and hands each entry that does not to ``on_odd``
with the reason: fsck reports them, the other callers leave them alone.
Nothing here changes the store.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..drivers import StorageDriver, UnsafeEntryError
from ..drivers.treelisting import TreeListing
from . import paths
from .digest import ALGORITHMS, CANONICAL, Digest
from .errors import InvalidDigestError

OnOdd = Callable[[str, str], Awaitable[None]]


class Lister(Protocol):
    """What the walks list with: a driver, or a ``readahead.Snapshot`` of one."""

    async def list_if_present(self, path: str) -> list[str]: ...


def packed_listing(lister: Lister, path: str) -> TreeListing | None:
    """``path``'s packed listing where ``lister`` holds its listings packed (a
    ``readahead.Snapshot``'s ``packed_listing``): the walks over every blob take the
    hex-named directories from it as raw bytes. Asked by attribute: an ``isinstance``
    of a runtime Protocol costs more than a walk's step."""
    find = getattr(lister, "packed_listing", None)
    return find(path) if find is not None else None


log = logging.getLogger(__name__)


async def ignore_odd(path: str, why: str) -> None:
    """The default for ``on_odd``: an odd entry is skipped."""


async def log_odd(path: str, why: str) -> None:
    """An odd entry skipped with a line in the log."""
    log.warning("ignoring %s: %s", path, why)


async def _entries(driver: Lister, path: str, on_odd: OnOdd = ignore_odd) -> list[str]:
    """The entries of ``path``; one that cannot be listed (a symbolic link, never
    followed) is odd and holds nothing."""
    try:
        return sorted(await driver.list_if_present(path))
    except UnsafeEntryError as exc:
        await on_odd(path, exc.what)
        return []


async def names(driver: Lister, path: str, on_odd: OnOdd = ignore_odd) -> list[str]:
    """The names of ``path``'s entries (see ``_entries``)."""
    return [_name(entry) for entry in await _entries(driver, path, on_odd)]


def _name(path: str) -> str:
    return paths.base_name(path)


async def blob_dirs(driver: Lister, on_odd: OnOdd = ignore_odd) -> list[tuple[Digest, str]]:
    """Every ``blobs/<alg>/<hh>/<hex>`` directory with the digest it names."""
    found = []
    for algorithm, prefix in await _blob_prefix_dirs(driver, on_odd):
        found += await _blob_dirs_in(driver, algorithm, prefix, on_odd)
    return found


async def _blob_prefix_dirs(driver: Lister, on_odd: OnOdd) -> list[tuple[str, str]]:
    """Every ``blobs/<alg>/<hh>`` directory with its algorithm."""
    found = []
    for alg_dir in await _entries(driver, paths.BLOBS, on_odd):
        algorithm = _name(alg_dir)
        if algorithm not in ALGORITHMS:
            await on_odd(alg_dir, "not a digest algorithm")
            continue
        found += [(algorithm, prefix) for prefix in await _entries(driver, alg_dir, on_odd)]
    return found


async def _blob_dirs_in(
    driver: Lister, algorithm: str, prefix: str, on_odd: OnOdd
) -> list[tuple[Digest, str]]:
    entries = await _entries(driver, prefix, on_odd)
    return await _checked_blob_dirs(algorithm, prefix, entries, on_odd)


async def _checked_blob_dirs(
    algorithm: str, prefix: str, entries: list[str], on_odd: OnOdd
) -> list[tuple[Digest, str]]:
    """Of the entries of a blob prefix directory, those that are blob directories."""
    found = []
    for blob_dir in entries:
        try:
            digest = Digest.from_parts(algorithm, _name(blob_dir))
        except InvalidDigestError:
            await on_odd(blob_dir, "not a blob directory (name is no digest)")
            continue
        if _name(prefix) != digest.hex[:2]:
            await on_odd(blob_dir, "blob directory under the wrong prefix")
            continue
        found.append((digest, blob_dir))
    return found


@dataclass
class BlobPrefix:
    """One ``blobs/<alg>/<hh>`` directory's blobs: the sha256 ones a packed lister
    kept as raw bytes (``packed``; those under the wrong prefix were reported and are
    skipped by whoever reads it), and every other blob directory as a digest."""

    name: str  # the prefix, "<hh>"
    packed: TreeListing | None
    others: list[Digest]


async def blob_prefixes(lister: Lister, on_odd: OnOdd = ignore_odd) -> list[BlobPrefix]:
    """The blobs of ``blob_dirs`` by prefix directory, held compactly: from a packed
    lister, a sha256 blob directory stays the raw bytes it was kept as."""
    found = []
    for algorithm, prefix in await _blob_prefix_dirs(lister, on_odd):
        listing = packed_listing(lister, prefix)
        if listing is None or algorithm != CANONICAL:
            dirs = await _blob_dirs_in(lister, algorithm, prefix, on_odd)
            found.append(BlobPrefix(_name(prefix), None, [d for d, _ in dirs]))
            continue
        blobs = BlobPrefix(_name(prefix), listing, [])
        for raw in listing.raw_hexes():
            if raw[:1].hex() != blobs.name:
                await on_odd(f"{prefix}/{raw.hex()}", "blob directory under the wrong prefix")
        dirs = await _checked_blob_dirs(algorithm, prefix, listing.rest(), on_odd)
        blobs.others = [d for d, _ in dirs]
        found.append(blobs)
    return found


async def digest_dirs(
    driver: Lister, directory: str, on_odd: OnOdd = ignore_odd
) -> list[tuple[Digest, str]]:
    """Every ``<alg>/<hex>`` directory below ``directory`` (``_layers``, revisions, a
    tag's index) with the digest it names; its ``link`` may be missing."""
    raws, others = await digest_dir_values(driver, directory, on_odd)
    digests = [Digest(CANONICAL, raw.hex()) for raw in raws]
    if others:
        digests = sorted(digests + others)  # the order of their paths
    return [(d, f"{directory}/{d.algorithm}/{d.hex}") for d in digests]


async def _algorithm_dirs(lister: Lister, directory: str, on_odd: OnOdd) -> list[str]:
    """The ``<alg>`` directories of ``directory`` (odd names reported)."""
    found = []
    for alg_dir in await _entries(lister, directory, on_odd):
        if _name(alg_dir) in ALGORITHMS:
            found.append(alg_dir)
        else:
            await on_odd(alg_dir, "not a digest algorithm")
    return found


async def _named_by_digests(
    alg_dir: str, entries: list[str], on_odd: OnOdd
) -> list[tuple[Digest, str]]:
    """Of ``alg_dir``'s entries, those named by a digest, with it."""
    found = []
    for entry in entries:
        try:
            found.append((Digest.from_parts(_name(alg_dir), _name(entry)), entry))
        except InvalidDigestError:
            await on_odd(entry, "not a digest directory")
    return found


async def digest_dir_values(
    lister: Lister, directory: str, on_odd: OnOdd = ignore_odd
) -> tuple[list[bytes], list[Digest]]:
    """``digest_dirs`` of ``directory``, held compactly: from a packed lister, the
    sha256 ones as their raw values (no path, no ``Digest``), every other as a
    digest."""
    raws: list[bytes] = []
    others: list[Digest] = []
    for alg_dir in await _algorithm_dirs(lister, directory, on_odd):
        listing = packed_listing(lister, alg_dir)
        if listing is not None and _name(alg_dir) == CANONICAL:
            raws += listing.raw_hexes()
            entries = listing.rest()
        else:
            entries = await _entries(lister, alg_dir, on_odd)
        others += [d for d, _ in await _named_by_digests(alg_dir, entries, on_odd)]
    return raws, others


async def upload_ids(driver: Lister, repository: str, on_odd: OnOdd = ignore_odd) -> list[str]:
    """The ids of the upload directories of ``repository``."""
    found = []
    for entry in await _entries(driver, paths.uploads_dir(repository), on_odd):
        if paths.UPLOAD_ID_RE.fullmatch(_name(entry)):
            found.append(_name(entry))
        else:
            await on_odd(entry, "not an upload directory")
    return found


async def hash_states(
    driver: Lister, repository: str, upload_id: str, on_odd: OnOdd = ignore_odd
) -> dict[int, str]:
    """An upload's sha256 hash states by the offset they were stored at."""
    states = {}
    directory = paths.upload_hash_states(repository, upload_id, CANONICAL)
    for entry in await _entries(driver, directory, on_odd):
        if _name(entry).isdigit():
            states[int(_name(entry))] = entry
        else:
            await on_odd(entry, "name is not an offset")
    return states


def by_name(names: dict[str, str]) -> dict[str, str]:
    """Upload ids by the name each shows under, from each id's stored name: the one it
    was given (``_uploads/<id>/name``), or its id when it has none that can be a file
    name. Of uploads sharing one name (two creators at one moment), the smallest id
    takes it and the others show under their ids, so that every reader agrees and
    none is hidden."""
    named: dict[str, list[str]] = {}
    for upload_id in sorted(names):
        name = names[upload_id]
        named.setdefault(name if paths.is_file_name(name) else upload_id, []).append(upload_id)
    found: dict[str, str] = {}
    for name, ids in named.items():
        found.setdefault(name, ids[0])
        for other in ids[1:]:
            found.setdefault(other, other)
    return found


async def newest_below(
    driver: StorageDriver, path: str, directories: bool = False
) -> datetime | None:
    """The newest modification time of the files below directory ``path`` (with
    ``directories``, of its directories too); None when it holds none. A symbolic
    link below raises UnsafeEntryError: it has no age worth anything."""
    newest = None
    async for info in driver.walk(path):
        if (directories or not info.is_dir) and (newest is None or info.mod_time > newest):
            newest = info.mod_time
    return newest
