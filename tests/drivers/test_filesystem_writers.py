"""Two writers of one file on disk, each through its own driver (two mounts of one
store), appending at the same moment from worker threads: one writer's bytes follow
the other's, and a writer whose end moved is refused (FileChangedError), never a
mix. With the end checked under a shared lock both passed the check and interleaved
their bytes (seen through the kernel in
test_two_mounts_appending_to_one_upload[filesystem])."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from layerfs.drivers import FileChangedError, FilesystemDriver, filesystem

PIECE = 1 << 20
PIECES = 4
ROUNDS = 100


async def append_all(driver: FilesystemDriver, path: str, data: bytes) -> str:
    writer = await driver.writer(path, append=True)
    try:
        for i in range(0, len(data), PIECE):
            await writer.write_pieces([data[i : i + PIECE]])
        await writer.commit()
    except FileChangedError:
        return "refused"
    finally:
        await writer.close()
    return "wrote"


async def test_two_drivers_appending_at_once_never_mix(tmp_path: Path) -> None:
    drivers = [FilesystemDriver(str(tmp_path / "store")) for _ in range(2)]
    contents = [os.urandom(PIECE * PIECES), os.urandom(PIECE * PIECES)]
    for round_ in range(ROUNDS):
        path = f"/round/{round_}/data"
        await drivers[0].put_content(path, b"")
        results: list[str] = ["", ""]

        async def run(n: int, path: str = path, results: list[str] = results) -> None:
            results[n] = await append_all(drivers[n], path, contents[n])

        async with trio.open_nursery() as nursery:
            for n in range(2):
                nursery.start_soon(run, n)
        held = await drivers[0].get_content(path)
        assert one_then_the_other(held, contents, results), f"round {round_}: mixed {results}"


def one_then_the_other(held: bytes, contents: list[bytes], results: list[str]) -> bool:
    """Whether ``held`` is one writer's bytes, then the other's (a writer that opened
    after the first's write appends after it), each whole if it "wrote" and cut at a
    write (a piece) where it was refused."""
    for first in (0, 1):
        second = 1 - first
        for cut in range(0, len(held) + 1, PIECE):
            head, tail = held[:cut], held[cut:]
            if not (contents[first].startswith(head) and contents[second].startswith(tail)):
                continue
            whole = {first: head == contents[first], second: tail == contents[second]}
            if all(whole[n] for n in (0, 1) if results[n] == "wrote"):
                return True
    return False


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(
        st.lists(st.integers(0, 3 << 20), min_size=1, max_size=4), min_size=1, max_size=4
    ),
)
def test_a_write_hands_the_kernel_at_most_write_call_bytes_at_a_time(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[list[int]]
) -> None:
    """Pieces of any sizes, gathered or not, go out in writev calls of at most
    WRITE_CALL bytes (more fills the page cache with folios a ballooned virtual machine
    hands over slowly), and the file holds every byte in order."""
    calls: list[int] = []
    real = filesystem.os.writev

    def counted(fd: int, views: list[memoryview]) -> int:
        calls.append(sum(map(len, views)))
        return real(fd, views)

    async def write() -> None:
        driver = FilesystemDriver(str(tmp_path_factory.mktemp("store")))
        writer = await driver.writer("/a/data")
        batches = [[os.urandom(n) for n in batch] for batch in sizes]
        try:
            for batch in batches:
                await writer.write_pieces(batch)
            await writer.commit()
        finally:
            await writer.close()
        assert await driver.get_content("/a/data") == b"".join(b"".join(b) for b in batches)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(filesystem.os, "writev", counted)
        trio.run(write)
    assert bool(calls) == any(map(any, sizes)), calls  # bytes to write, and only then
    assert max(calls, default=0) <= 1 << 20, calls  # no 2 MiB folio asked for
