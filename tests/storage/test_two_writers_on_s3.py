"""Two programs appending to one upload on a real S3 store (SeaweedFS), each through
its own driver, as two mounts do: their steps interleave in every order Hypothesis
draws, some at the same moment (two pending writes at one key). Whatever happens, a
finish that succeeds stores a blob whose bytes match its name, every step returns, and
an upload nobody removed is never answered as missing (ENOENT): a refusal says busy
or changed. test_uploads.py keeps the case this found (a stamp vouching for another
writer's hash state); test_s3_driver.py those of a pending write another writer
completed meanwhile (it was NoSuchUpload, ENOENT)."""

from __future__ import annotations

import os
import uuid

import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from layerfs.drivers import PathNotFoundError, StorageDriverError
from layerfs.drivers.s3 import S3Driver
from layerfs.storage import Digest, Registry, RegistryError, UploadUnknownError, paths
from layerfs.storage.uploads import Stamp, Upload

from ..conftest import S3_BUCKET
from ..seaweed import SeaweedFS
from ..viewmodel import TrioThread

REPO = "two/writers"
WRITERS = ("a", "b")
writers = st.sampled_from(WRITERS)
# small parts, and one over S3's least part size (an append adopts it by a copy)
sizes = st.sampled_from([1, 30_000, 70_000, (5 << 20) + 1])
STEP_TIMEOUT = 60  # seconds: no step may hang


class Meeting:
    """Two tasks wait for each other once (at most ``PATIENCE`` seconds)."""

    PATIENCE = 5

    def __init__(self) -> None:
        self.arrived = 0
        self.all_here = trio.Event()

    async def arrive(self) -> None:
        self.arrived += 1
        if self.arrived == 2:
            self.all_here.set()
        with trio.move_on_after(self.PATIENCE):
            await self.all_here.wait()


class MeetingS3Driver(S3Driver):
    """An S3 driver whose writer, while a meeting is set, looks for a pending write
    and then waits for the other writer to have looked too: both find none and start
    their own, as two mounts opening at the same moment do."""

    meeting: Meeting | None = None

    async def current_upload(
        self, key: str, take_over: bool = False
    ) -> tuple[str, list[dict]] | None:
        found = await super().current_upload(key, take_over)
        meeting = self.meeting
        if take_over and meeting is not None:
            self.meeting = None
            await meeting.arrive()
        return found


class TwoWriters(RuleBasedStateMachine):
    seaweed: SeaweedFS

    def __init__(self) -> None:
        super().__init__()
        self.loop = TrioThread()
        prefix = f"w/{uuid.uuid4().hex}"
        self.drivers: dict[str, MeetingS3Driver] = {
            w: MeetingS3Driver(
                S3_BUCKET,
                prefix,
                endpoint=self.seaweed.endpoint,
                access_key="any",
                secret_key="any",
            )
            for w in WRITERS
        }
        self.repos = {w: Registry(d).repository(REPO) for w, d in self.drivers.items()}
        self.open: dict[str, Upload] = {}
        self.stamps: dict[str, Stamp | None] = {w: None for w in WRITERS}
        self.wrote: dict[str, bytes] = {w: b"" for w in WRITERS}  # this session's bytes
        self.finished: Digest | None = None
        self.upload_id = ""
        self.missing: list[str] = []  # refusals that called the upload missing

    def run(self, fn, *args):  # type: ignore[no-untyped-def]
        async def bounded():  # type: ignore[no-untyped-def]
            with trio.fail_after(STEP_TIMEOUT):
                return await fn(*args)

        return self.loop.run(bounded)

    @initialize(empty_object=st.booleans())
    def create(self, empty_object: bool) -> None:
        """An empty upload; its data an empty object (after a read) or a pending write."""

        async def create() -> None:
            upload = await self.repos["a"].uploads.create()
            await upload.close()
            self.upload_id = upload.id
            if empty_object:
                async for _ in self.drivers["a"].read_all(self.data):
                    pass

        self.run(create)

    @property
    def data(self) -> str:
        return paths.upload_data(REPO, self.upload_id)

    async def _upload(self, w: str) -> Upload:
        if w not in self.open:
            self.open[w] = await self.repos[w].uploads.resume(self.upload_id, self.stamps[w])
            self.wrote[w] = b""
        return self.open[w]

    def _refused(self, w: str, exc: Exception) -> None:
        """Note a refusal that calls the upload missing while nobody has moved it."""
        if isinstance(exc, PathNotFoundError | UploadUnknownError) and self.finished is None:
            self.missing.append(f"{w}: {type(exc).__name__}: {exc}")

    async def _write(self, w: str, size: int, fill: int) -> None:
        data = bytes([fill]) * size
        try:
            upload = await self._upload(w)
            await upload.write(data)
            self.wrote[w] += data
        except (RegistryError, StorageDriverError) as exc:
            self._refused(w, exc)
            await self._close(w)  # refused (busy, changed): the session ends

    async def _close(self, w: str) -> None:
        upload = self.open.pop(w, None)
        if upload is None:
            return
        try:
            await upload.close()
            self.stamps[w] = upload.stamp
        except (RegistryError, StorageDriverError) as exc:
            self._refused(w, exc)
            self.stamps[w] = None

    @rule(w=writers, size=sizes, fill=st.integers(0, 255), close=st.booleans())
    def append(self, w: str, size: int, fill: int, close: bool) -> None:
        """A write through mount ``w``, ending its session (``cat >> x``) or keeping it
        open for the next steps (a writer that has not closed yet)."""

        async def append() -> None:
            await self._write(w, size, fill)
            if close:
                await self._close(w)

        if self.finished is None:  # (not a precondition: outcomes vary from run to run)
            self.run(append)

    @rule(size=sizes, first_to_close=writers)
    def append_both_at_once(self, size: int, first_to_close: str) -> None:
        """``cat a >> m1/x & cat b >> m2/x``: both open and write at once (two pending
        writes at one key), then both close, in the order drawn."""

        async def both() -> None:
            for w in WRITERS:  # two new programs: any earlier session ends first
                await self._close(w)
            meeting = Meeting()
            for driver in self.drivers.values():
                driver.meeting = meeting
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, "a", size, ord("a"))
                nursery.start_soon(self._write, "b", size, ord("b"))
            for driver in self.drivers.values():
                driver.meeting = None
            await self._name_the_older_write_a()
            await self._close(first_to_close)
            await self._close("b" if first_to_close == "a" else "a")

        if self.finished is None:
            self.run(both)

    async def _name_the_older_write_a(self) -> None:
        """Which of two pending writes a read completes (the newer) is the store's
        choice; naming the older one's writer ``a`` makes a drawn sequence mean the
        same thing in every run, so Hypothesis can replay and shrink it."""
        newest = await self.drivers["a"].pending_upload(self.drivers["a"].key(self.data))
        writer = (
            self.open["a"]._writer if "a" in self.open else None
        )  # which pending write is its own
        if writer is not None and getattr(writer, "upload_id", None) == newest:
            for table in (self.open, self.drivers, self.repos, self.stamps, self.wrote):
                swapped = {"b" if k == "a" else "a": v for k, v in table.items()}  # type: ignore[attr-defined]
                table.clear()  # type: ignore[attr-defined]
                table.update(swapped)  # type: ignore[attr-defined]

    @rule(w=writers)
    def read(self, w: str) -> None:
        """``sha256sum x`` through mount ``w``, which completes the newest pending write
        (perhaps the one the other mount is still appending to)."""

        async def read() -> None:
            try:
                async for _ in self.drivers[w].read_all(self.data):
                    pass
            except (RegistryError, StorageDriverError) as exc:
                self._refused(w, exc)

        if self.finished is None:
            self.run(read)

    @invariant()
    def an_upload_nobody_moved_is_never_missing(self) -> None:
        assert not self.missing, self.missing

    @rule(w=writers, named=st.sampled_from(["read", "own"]))
    def finish(self, w: str, named: str) -> None:
        """``mv x sha256:…`` through mount ``w``, under the digest of what a read there
        returns (``sha256sum x``, which completes the newest pending write), or of
        what ``w`` wrote in its session."""
        if self.finished is not None:  # (not a precondition: outcomes vary by run)
            return

        async def finish() -> None:
            try:
                if named == "read":
                    content = b"".join([c async for c in self.drivers[w].read_all(self.data)])
                else:
                    content = self.wrote[w]
                upload = await self._upload(w)
                info = await upload.finish(Digest.of(content))
            except (RegistryError, StorageDriverError) as exc:
                self._refused(w, exc)
                await self._close(w)
                return
            self.open.pop(w, None)
            self.finished = info.digest

        self.run(finish)
        if self.finished is not None:
            self.check_blob(self.finished)

    def check_blob(self, digest: Digest) -> None:
        held = self.run(self.drivers["a"].get_content, paths.blob_data(digest))
        assert Digest.of(held) == digest, "a blob whose bytes do not match its name"

    @invariant()
    def every_finished_blob_is_named_by_its_bytes(self) -> None:
        if self.finished is not None:
            self.check_blob(self.finished)

    def teardown(self) -> None:
        async def close_all() -> None:
            for w in list(self.open):
                await self._close(w)
            for driver in self.drivers.values():
                await driver.aclose()

        try:
            self.run(close_all)
        finally:
            self.loop.close()


def test_two_writers_on_s3(seaweedfs: SeaweedFS) -> None:
    TwoWriters.seaweed = seaweedfs
    budget = settings(
        max_examples=int(os.environ.get("LAYERFS_MODEL_EXAMPLES", "60")),
        stateful_step_count=int(os.environ.get("LAYERFS_MODEL_STEPS", "6")),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=os.environ.get("LAYERFS_MODEL_RANDOM") is None,
        database=None,
    )
    run_state_machine_as_test(TwoWriters, settings=budget)
