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
from typing import TYPE_CHECKING, Protocol

from ..drivers import UnsafeEntryError
from . import paths
from .digest import ALGORITHMS, CANONICAL, Digest
from .errors import InvalidDigestError

if TYPE_CHECKING:
    from .uploads import UploadStore

OnOdd = Callable[[str, str], Awaitable[None]]


class Lister(Protocol):
    """What the walks list with: a driver, or a ``readahead.Snapshot`` of one."""

    async def list_if_present(self, path: str) -> list[str]: ...


log = logging.getLogger(__name__)


async def _ignore(path: str, why: str) -> None:
    """The default for ``on_odd``: an odd entry is skipped."""


async def log_odd(path: str, why: str) -> None:
    """An odd entry skipped with a line in the log."""
    log.warning("ignoring %s: %s", path, why)


async def _entries(driver: Lister, path: str, on_odd: OnOdd = _ignore) -> list[str]:
    """The entries of ``path``; one that cannot be listed (a symbolic link, never
    followed) is odd and holds nothing."""
    try:
        return sorted(await driver.list_if_present(path))
    except UnsafeEntryError as exc:
        await on_odd(path, exc.what)
        return []


async def names(driver: Lister, path: str, on_odd: OnOdd = _ignore) -> list[str]:
    """The names of ``path``'s entries (see ``_entries``)."""
    return [_name(entry) for entry in await _entries(driver, path, on_odd)]


def _name(path: str) -> str:
    return path.rsplit("/", 1)[1]


async def blob_dirs(driver: Lister, on_odd: OnOdd = _ignore) -> list[tuple[Digest, str]]:
    """Every ``blobs/<alg>/<hh>/<hex>`` directory with the digest it names."""
    found = []
    for alg_dir in await _entries(driver, paths.BLOBS, on_odd):
        algorithm = _name(alg_dir)
        if algorithm not in ALGORITHMS:
            await on_odd(alg_dir, "not a digest algorithm")
            continue
        for prefix in await _entries(driver, alg_dir, on_odd):
            for blob_dir in await _entries(driver, prefix, on_odd):
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


async def digest_dirs(
    driver: Lister, directory: str, on_odd: OnOdd = _ignore
) -> list[tuple[Digest, str]]:
    """Every ``<alg>/<hex>`` directory below ``directory`` (``_layers``, revisions, a
    tag's index) with the digest it names; its ``link`` may be missing."""
    found = []
    for alg_dir in await _entries(driver, directory, on_odd):
        if _name(alg_dir) not in ALGORITHMS:
            await on_odd(alg_dir, "not a digest algorithm")
            continue
        for entry in await _entries(driver, alg_dir, on_odd):
            try:
                found.append((Digest.from_parts(_name(alg_dir), _name(entry)), entry))
            except InvalidDigestError:
                await on_odd(entry, "not a digest directory")
    return found


async def upload_ids(driver: Lister, repository: str, on_odd: OnOdd = _ignore) -> list[str]:
    """The ids of the upload directories of ``repository``."""
    found = []
    for entry in await _entries(driver, paths.uploads_dir(repository), on_odd):
        if paths.UPLOAD_ID_RE.fullmatch(_name(entry)):
            found.append(_name(entry))
        else:
            await on_odd(entry, "not an upload directory")
    return found


async def hash_states(
    driver: Lister, repository: str, upload_id: str, on_odd: OnOdd = _ignore
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


async def uploads_by_name(uploads: UploadStore) -> dict[str, str]:
    """Every upload of a repository by the name it shows under (see ``by_name``)."""
    ids = await upload_ids(uploads.driver, uploads.repository)
    return by_name({upload_id: await uploads.name_of(upload_id) for upload_id in ids})


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
