"""Two mounts of one store, driven side by side without the kernel."""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
)

from layerfs.drivers import (
    MemoryDriver,
)
from layerfs.storage import Digest, Registry

from ..fsops import Clock, Errno
from .machine import ViewMachine, check_store, names, picks, stored_blobs
from .model import Result
from .mountedview import MountedView, TrioThread

mounts = st.sampled_from(["a", "b"])


@dataclass(eq=False)
class SharedUpload:
    owner: str  # the mount whose handles write it; the other only reads
    content: bytes = b""
    gone: bool = False


@dataclass
class SharedHandle:
    fh: int
    mount: str
    upload: SharedUpload
    writable: bool


class TwoMountsMachine(RuleBasedStateMachine):
    """Two mounts of one store, as two machines sharing a bucket: an upload is written
    through the mount that made it (each write flushed, as ``cp`` and ``fsync`` leave
    it) while the other lists, reads, renames, removes and finishes it. Handles left on
    an upload that the other mount removed or finished must answer an errno and leave
    nothing behind."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = TrioThread()
        self.store = MemoryDriver()
        self.loop.run(ViewMachine._seed, self)
        # One clock for both: a mount trusts what it read for DIR_TIMEOUT, so what the
        # other mount changed shows once that has passed. The clock passes it whenever
        # the rules turn from one mount to the other.
        self.clock = Clock()
        self.mounts = {m: MountedView(self.loop, self.store, self.clock) for m in ("a", "b")}
        self.last_mount = "a"
        self.uploads: dict[str, SharedUpload] = {}  # repository r, by name
        self.blobs: set[str] = set()
        self.handles: dict[tuple[str, int], SharedHandle] = {}

    def do(self, mount: str, method: str, *args: Any) -> Result:
        if mount != self.last_mount:
            self.clock.past_the_timeout()
            self.last_mount = mount
        kernel = self.mounts[mount].kernel
        try:
            return ("ok", self.loop.run(getattr(kernel, method), *args))
        except Errno as exc:
            return ("errno", exc.errno)

    def teardown(self) -> None:
        try:
            with contextlib.suppress(Exception):
                for mount, fh in list(self.handles):
                    self.do(mount, "release", fh)
            for view in self.mounts.values():
                view.unmount()
        finally:
            self.loop.close()

    def _pick(self, pick: int) -> SharedHandle | None:
        if not self.handles:
            return None
        return self.handles[sorted(self.handles)[pick % len(self.handles)]]

    def _forget(self, name: str) -> None:
        self.uploads.pop(name).gone = True

    @rule(mount=mounts, name=names)
    def create(self, mount: str, name: str) -> None:
        got = self.do(mount, "create", f"repositories/r/_uploads/{name}", os.O_WRONLY | os.O_CREAT)
        upload = self.uploads.get(name)
        writing = any(h.writable and h.upload is upload for (m, _), h in self.handles.items()
                      if m == mount)  # fmt: skip
        if writing:  # one writer per upload in a mount
            assert got == ("errno", errno.EBUSY), got
            return
        assert got[0] == "ok", got
        if upload is None:
            upload = self.uploads[name] = SharedUpload(mount)
        self.handles[(mount, got[1])] = SharedHandle(got[1], mount, upload, mount == upload.owner)
        if mount != upload.owner:  # opened for writing elsewhere: this one only reads
            self.do(mount, "release", got[1])
            del self.handles[(mount, got[1])]

    @rule(mount=mounts, name=names)
    def open_to_read(self, mount: str, name: str) -> None:
        got = self.do(mount, "open", f"repositories/r/_uploads/{name}", os.O_RDONLY)
        upload = self.uploads.get(name)
        if upload is None:
            assert got == ("errno", errno.ENOENT), got
            return
        assert got[0] == "ok", got
        self.handles[(mount, got[1])] = SharedHandle(got[1], mount, upload, False)

    @rule(pick=picks, data=st.binary(min_size=1, max_size=64))
    def write_and_flush(self, pick: int, data: bytes) -> None:
        handle = self._pick(pick)
        if handle is None or not handle.writable:
            return
        upload = handle.upload
        got = self.do(handle.mount, "write", handle.fh, len(upload.content), data)
        if got[0] == "ok":
            got = self.do(handle.mount, "flush", handle.fh)
        if upload.gone:  # removed or finished through the other mount
            assert got[0] == "errno" and got[1] in (errno.ENOENT, errno.ESTALE), got
        else:
            assert got == ("ok", None), got
            upload.content += data

    @rule(pick=picks)
    def read(self, pick: int) -> None:
        handle = self._pick(pick)
        if handle is None:
            return
        got = self.do(handle.mount, "read", handle.fh, 0, 1 << 20)
        if handle.upload.gone:
            assert got[0] == "errno" or got[1] in (b"", handle.upload.content), got
        else:
            assert got == ("ok", handle.upload.content), got

    @rule(pick=picks)
    def release(self, pick: int) -> None:
        handle = self._pick(pick)
        if handle is None:
            return
        assert self.do(handle.mount, "release", handle.fh) == ("ok", None)
        del self.handles[(handle.mount, handle.fh)]

    @rule(mount=mounts, name=names)
    def unlink(self, mount: str, name: str) -> None:
        got = self.do(mount, "unlink", f"repositories/r/_uploads/{name}")
        if name not in self.uploads:
            assert got == ("errno", errno.ENOENT), got
        else:
            assert got == ("ok", None), got
            self._forget(name)

    @rule(mount=mounts, old=names, new=names)
    def rename(self, mount: str, old: str, new: str) -> None:
        up = "repositories/r/_uploads"
        got = self.do(mount, "rename", f"{up}/{old}", f"{up}/{new}", 0)
        if old not in self.uploads:
            assert got == ("errno", errno.ENOENT), got
        elif old != new:
            assert got == ("ok", None), got
            if new in self.uploads:
                self._forget(new)
            self.uploads[new] = self.uploads.pop(old)

    @rule(mount=mounts, name=names)
    def finish(self, mount: str, name: str) -> None:
        upload = self.uploads.get(name)
        digest = Digest.of(upload.content if upload else b"")
        up = "repositories/r/_uploads"
        got = self.do(mount, "rename", f"{up}/{name}", f"{up}/{digest}", 0)
        if upload is None:
            assert got == ("errno", errno.ENOENT), got
        else:
            assert got == ("ok", None), got
            self._forget(name)
            self.blobs.add(digest.hex)

    @invariant()
    def both_mounts_list_what_the_model_holds(self) -> None:
        for mount in self.mounts:
            assert self.do(mount, "listdir", "repositories/r/_uploads") == (
                "ok",
                sorted(self.uploads),
            )

    @invariant()
    def the_store_holds_no_leftovers(self) -> None:
        self.loop.run(check_store, self.store)
        ids = self.loop.run(Registry(self.store).repository("r").uploads.ids)
        assert len(ids) == len(self.uploads)
        stored = set(self.loop.run(stored_blobs, self.store))
        assert self.blobs <= stored
