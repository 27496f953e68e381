"""Two writers of one file on disk, each through its own driver (two mounts of one
store), appending at the same moment from worker threads: one writer's bytes follow
the other's, and a writer whose end moved is refused (FileChangedError), never a
mix. With the end checked under a shared lock both passed the check and interleaved
their bytes (seen through the kernel in
test_two_mounts_appending_to_one_upload[filesystem])."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from layerfs.drivers import FileChangedError, FilesystemDriver

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
