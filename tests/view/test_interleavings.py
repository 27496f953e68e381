"""Requests at the same time: programs run side by side through ``Operations`` (no
kernel) over one upload, with a driver that yields to the scheduler a drawn number of
times in every call, so Hypothesis chooses where each request's awaits let another run
and shrinks an interleaving that breaks something.

What must hold, whatever the interleaving (README, "Concurrent writers"):

- every blob's bytes hash to its name, and every layer link names a stored blob;
- a finish that succeeded named bytes that are now the blob;
- bytes of two writers never interleave in one upload (one writer at a time);
- every stored hash state is the state of that many first bytes of the data;
- every request ends within the deadline, and so does the unmount.

LAYERFS_MODEL_EXAMPLES sets the budget (scripts/soak-model runs a long one).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
from dataclasses import dataclass, field

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerfs.drivers import MemoryDriver
from layerfs.storage import Digest, paths
from layerfs.storage.hashstate import ResumableSha256

from ..fsops import Errno, Kernel, mounted
from ..wrappers import YieldingDriver

EXAMPLES = int(os.environ.get("LAYERFS_MODEL_EXAMPLES", "60"))
BUDGET = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("LAYERFS_MODEL_RANDOM") is None,
    database=None,
)
REPO = "r"
UPLOADS = f"repositories/{REPO}/_uploads"
UPLOAD = f"{UPLOADS}/x"

STEP = st.one_of(
    st.tuples(st.just("open"), st.sampled_from(["trunc", "append", "read", "create"])),
    st.tuples(st.just("write"), st.integers(1, 5)),
    st.tuples(st.just("read"), st.just(0)),
    st.tuples(st.just("flush"), st.just(0)),
    st.tuples(st.just("close"), st.just(0)),
    st.tuples(st.just("finish"), st.booleans()),
    st.tuples(st.just("rm"), st.just(0)),
    st.tuples(st.just("truncate"), st.just(0)),
)
OPEN = st.tuples(st.just("open"), st.sampled_from(["trunc", "append", "read", "create"]))
# programs open first, as processes do: so two opens meet at their awaits
PROGRAM = st.builds(lambda first, rest: [first, *rest], OPEN, st.lists(STEP, max_size=7))


@dataclass
class Program:
    """One process: its own byte (so its bytes can be told apart in the upload), at
    most one open handle, and what its finishes claimed."""

    letter: bytes
    fh: int | None = None
    position: int = 0
    finished: list[Digest] = field(default_factory=list)


async def run_step(k: Kernel, program: Program, step: tuple[str, object]) -> None:
    what, arg = step
    if what == "open" and program.fh is None:
        flags = {
            "trunc": os.O_WRONLY | os.O_TRUNC,
            "append": os.O_WRONLY | os.O_APPEND,
            "read": os.O_RDONLY,
            "create": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
        }[str(arg)]
        if arg == "create":
            program.fh = await k.create(UPLOAD, flags)
        else:
            program.fh = await k.open(UPLOAD, flags)
        program.position = 0 if flags & os.O_TRUNC else (await k.stat(UPLOAD)).st_size
    elif what == "write" and program.fh is not None:
        data = program.letter * int(arg)  # type: ignore[call-overload]
        await k.write(program.fh, program.position, data)
        program.position += len(data)
    elif what == "read" and program.fh is not None:
        await k.read(program.fh, 0, 1 << 16)
    elif what == "flush" and program.fh is not None:
        await k.flush(program.fh)
    elif what == "close" and program.fh is not None:
        fh, program.fh = program.fh, None
        await k.close(fh)
    elif what == "finish":
        # sha256sum x && mv x sha256:<what it printed>, or a wrong digest
        right = Digest.of(await k.read_file(UPLOAD) if arg else b"no such bytes")
        await k.rename(UPLOAD, f"{UPLOADS}/{right}")
        program.finished.append(right)
    elif what == "rm":
        await k.unlink(UPLOAD)
    elif what == "truncate":
        await k.truncate(UPLOAD, 0)


async def run_program(k: Kernel, program: Program, steps: list[tuple[str, object]]) -> None:
    for step in steps:
        try:
            await run_step(k, program, step)
        except Errno as exc:  # any errno is an answer; a hang or a crash is not
            assert exc.errno != errno.EIO, f"{step}: EIO"
    if program.fh is not None:
        fh, program.fh = program.fh, None
        try:
            await k.close(fh)
        except Errno as exc:
            assert exc.errno != errno.EIO


def kind_of(path: str) -> paths.Match | None:
    """The layout's name for a stored file (None for anything else)."""
    found = paths.match(tuple(path[len(paths.ROOT) + 1 :].split("/")))
    return None if found is None or found.is_dir else found


async def check_store(store: MemoryDriver, programs: list[Program]) -> None:
    files = {path: bytes(data) for path, data in store._files.items()}
    blobs = {}
    for path, data in files.items():
        match = kind_of(path)
        if match is not None and match.kind == "blob_data":
            digest = Digest(match.fields["alg"], match.fields["hex"])
            assert Digest.of(data) == digest, f"blob {digest} holds other bytes"
            blobs[digest] = data
    for path, data in files.items():
        match = kind_of(path)
        if match is not None and match.kind == "layer_link":
            assert Digest.parse(data.decode()) in blobs, f"{path} names no stored blob"
    for program in programs:  # a finish that was refused is not in `finished`
        for digest in program.finished:
            assert digest in blobs, f"finish of {digest} answered 0 but stored no blob"
    for path, data in files.items():
        match = kind_of(path)
        if match is None:
            continue
        if match.kind == "upload_data":
            runs = [letter for letter, _ in itertools.groupby(data)]
            assert len(runs) == len(set(runs)), f"two writers interleaved: {data!r}"
            state_dir = paths.upload_dir(REPO, match.fields["upload"]) + "/hashstates/sha256/"
            for state_path, state in files.items():
                if state_path.startswith(state_dir):
                    offset = int(state_path.rsplit("/", 1)[1])
                    if offset <= len(data):
                        got = ResumableSha256.unmarshal(state).hexdigest()
                        assert got == hashlib.sha256(data[:offset]).hexdigest(), state_path


async def interleave(programs: list[list[tuple[str, object]]], pauses: list[int]) -> None:
    store = MemoryDriver()
    cycle = itertools.cycle(pauses or [0])
    driver = YieldingDriver(store, lambda: next(cycle))
    people = [Program(bytes([ord("a") + i])) for i in range(len(programs))]
    try:
        async with mounted(driver) as k:
            k.ops.state.uploads.release_grace = 0.02  # programs here never release late
            await k.makedirs(UPLOADS)
            await k.write_file(UPLOAD, b"")
            async with trio.open_nursery() as nursery:
                for person, steps in zip(people, programs, strict=True):
                    nursery.start_soon(run_program, k, person, steps)
            with trio.fail_after(5):
                await k.ops.close_uploads()
            assert not k.ops.state.uploads.sessions, "a session outlived its handles"
    finally:
        await check_store(store, people)


@BUDGET
@given(
    programs=st.lists(PROGRAM, min_size=2, max_size=3),
    pauses=st.lists(st.integers(0, 4), max_size=40),
)
def test_programs_side_by_side_keep_every_blob_true(
    programs: list[list[tuple[str, object]]], pauses: list[int]
) -> None:
    trio.run(interleave, programs, pauses)


# the cases that were found, kept as they were found -----------------------------------
CASES = {
    # cat a > x & cat b > x: two O_TRUNC opens both built a session of their own
    "two writers replace one upload": [
        [("open", "trunc"), ("write", 3), ("close", 0), ("finish", True)],
        [("open", "trunc"), ("write", 2), ("close", 0)],
    ],
    # a reader and an appending writer open together; the finish runs while the
    # writer is open; the writer writes again
    "a write after the finish": [
        [("open", "append"), ("write", 2), ("write", 2), ("write", 2), ("close", 0)],
        [("open", "read"), ("close", 0), ("finish", True)],
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("pauses", [[0], [1, 0], [0, 1], [2, 0, 1], [0, 0, 3]])
def test_found_interleavings(case: str, pauses: list[int]) -> None:
    trio.run(interleave, CASES[case], pauses)


def test_the_check_sees_a_blob_that_is_not_its_name() -> None:
    """The invariant the whole harness rests on fails when it should."""
    store = MemoryDriver()

    async def wrong_blob() -> None:
        await store.put_content(paths.blob_data(Digest.of(b"a")), b"b")
        await check_store(store, [])

    with pytest.raises(AssertionError, match="holds other bytes"):
        trio.run(wrong_blob)
