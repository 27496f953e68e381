"""A small pure-Python model of the mounted view (docs/DESIGN.md, "The view") and a
Hypothesis state machine that drives ``Operations`` (without the kernel, over the
memory driver) and the model side by side.

Each rule makes one request as a program would and compares its result, errno
included, with the model's; the invariants look at the store itself. With a
``FaultyDriver`` below the mount the results are no longer predictable: then every
request must still end (an errno or a result, under the deadline), and the store must
satisfy the invariants after a remount without faults."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from typing import Any

import pyfuse3
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from layerfs.drivers import (
    MemoryDriver,
    StorageDriver,
)
from layerfs.storage import Digest, Registry, paths
from layerfs.storage.uploads import UUID_RE

from ..fsops import Clock, Errno, Kernel
from .faulty import FaultyDriver
from .model import (
    BAD_NAMES,
    CONFIG,
    MANIFEST,
    NAMES,
    NEW_REPO,
    REPOS,
    SEED,
    TAGS,
    M,
    MHandle,
    Model,
    MUpload,
    Result,
)
from .mountedview import MountedView, TrioThread

repos = st.sampled_from(REPOS)
names = st.sampled_from(NAMES)
picks = st.integers(min_value=0, max_value=1 << 16)
payloads = st.one_of(st.binary(min_size=1, max_size=64), st.just(os.urandom(300 << 10)))


class ViewMachine(RuleBasedStateMachine):
    """Any sequence of requests on uploads, link files and directories, checked
    against :class:`Model`. Subclasses change the driver below the mount."""

    faulty = False

    def __init__(self) -> None:
        super().__init__()
        self.loop = TrioThread()
        self.store = MemoryDriver()
        self.loop.run(self._seed)
        self.driver: StorageDriver = self.make_driver(self.store)
        self.model = Model()
        self.clock = Clock()  # what the mount read is trusted until the clock passes it
        self.mount = MountedView(self.loop, self.driver, self.clock)
        self.uncertain = False  # a fault made a result unpredictable: check invariants only

    def make_driver(self, store: MemoryDriver) -> StorageDriver:
        return store

    async def _seed(self) -> None:
        registry = Registry(self.store)
        for repo, content in SEED.items():
            await registry.repository(repo).layers.link(await registry.blobs.put(content))
        await registry.repository("r").layers.link(await registry.blobs.put(CONFIG))
        await registry.blobs.put(MANIFEST)

    @property
    def k(self) -> Kernel:
        assert self.mount.kernel is not None
        return self.mount.kernel

    def do(self, method: str, *args: Any) -> Result:
        try:
            return ("ok", self.loop.run(getattr(self.k, method), *args))
        except Errno as exc:
            return ("errno", exc.errno)

    def expect(self, got: Result, *allowed: Result) -> bool:
        """Compare with the model; True when the request succeeded. Under faults any
        errno is an allowed answer, and after one the model is only a guide."""
        if got in allowed:
            return got[0] == "ok"
        if self.faulty or self.uncertain:
            assert got[0] in ("ok", "errno"), got
            if got[0] == "errno":
                self.uncertain = True
            return got[0] == "ok"
        raise AssertionError(f"got {got}, the model allows {allowed}")

    def teardown(self) -> None:
        try:
            with contextlib.suppress(Exception):
                for fh in list(self.model.handles):
                    self.do("release", fh)
            self.mount.unmount()
        finally:
            self.loop.close()

    def _handle(self, pick: int) -> MHandle | None:
        if not self.model.handles:
            return None
        return self.model.handles[sorted(self.model.handles)[pick % len(self.model.handles)]]

    # uploads -------------------------------------------------------------------------
    @rule(repo=repos, name=names, exclusive=st.booleans(), trunc=st.booleans())
    def create(self, repo: str, name: str, exclusive: bool, trunc: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else 0)
        flags |= os.O_TRUNC if trunc else 0
        got = self.do("create", f"repositories/{repo}/_uploads/{name}", flags)
        self._created(got, repo, name, exclusive, trunc)

    def _created(self, got: Result, repo: str, name: str, exclusive: bool, trunc: bool) -> None:
        existing = self.model.uploads.get((repo, name))
        if repo not in self.model.visible_repos():
            succeeded = self.expect(got, ("errno", errno.ENOENT))
        elif existing is not None and exclusive:
            succeeded = self.expect(got, ("errno", errno.EEXIST))
        elif existing is not None and existing.busy_for(None):
            succeeded = self.expect(got, ("errno", errno.EBUSY))
        else:
            succeeded = self.expect(got, *([got] if got[0] == "ok" else []))
        if not succeeded:
            return
        upload = existing or MUpload(repo)  # under faults, whatever the model thought
        if trunc:
            upload.content.clear()
        self.model.uploads[(repo, name)] = upload
        self.model.handles[got[1]] = MHandle(got[1], upload, True)
        upload.writer, upload.dirty = got[1], True

    @rule(name=st.sampled_from(sorted(BAD_NAMES)))
    def create_badly_named(self, name: str) -> None:
        got = self.do("create", f"repositories/r/_uploads/{name}")
        visible = "r" in self.model.visible_repos()
        self.expect(got, ("errno", BAD_NAMES[name] if visible else errno.ENOENT))

    @rule(repo=repos, name=names, mode=st.sampled_from([os.O_RDONLY, os.O_WRONLY, os.O_RDWR]),
          trunc=st.booleans())  # fmt: skip
    def open(self, repo: str, name: str, mode: int, trunc: bool) -> None:
        flags = mode | (os.O_TRUNC if trunc else 0)
        got = self.do("open", f"repositories/{repo}/_uploads/{name}", flags)
        upload = self.model.uploads.get((repo, name))
        if upload is None:
            if not self.expect(got, ("errno", errno.ENOENT)):
                return
            upload = self.model.uploads[(repo, name)] = MUpload(repo)  # under faults
        elif mode != os.O_RDONLY and upload.busy_for(None):
            if not self.expect(got, ("errno", errno.EBUSY)):
                return
        elif not self.expect(got, *([got] if got[0] == "ok" else [])):
            return
        if trunc and mode != os.O_RDONLY:
            upload.content.clear()
        self.model.handles[got[1]] = MHandle(got[1], upload, mode != os.O_RDONLY)
        if mode != os.O_RDONLY:
            upload.writer, upload.dirty = got[1], True

    @rule(pick=picks, data=payloads, where=st.sampled_from(["end", "before", "past"]),
          gap=st.integers(1, 5000))  # fmt: skip
    def write(self, pick: int, data: bytes, where: str, gap: int) -> None:
        handle = self._handle(pick)
        if handle is None:
            return
        content = handle.upload.content
        offset = {"end": len(content), "before": len(content) - 1, "past": len(content) + gap}
        if where == "before" and not content:
            return
        got = self.do("write", handle.fh, offset[where], data)
        if not handle.writable:  # the kernel itself refuses a read-only descriptor first
            self.expect(got, ("errno", errno.EBADF))
        elif handle.upload.gone:
            self.expect(got, ("errno", errno.ESTALE))
        elif where == "before":
            self.expect(got, ("errno", errno.EINVAL))
        elif self.expect(got, ("ok", len(data))):
            content.extend(bytes(offset[where] - len(content)))
            content.extend(data)
            handle.upload.dirty = True

    @rule(pick=picks, start=st.integers(0, 400_000), size=st.integers(1, 400_000))
    def read(self, pick: int, start: int, size: int) -> None:
        handle = self._handle(pick)
        if handle is None:
            return
        got = self.do("read", handle.fh, start, size)
        if handle.upload.gone:
            self.expect(got, ("errno", errno.ESTALE))
        else:
            self.expect(got, ("ok", bytes(handle.upload.content[start : start + size])))

    @rule(pick=picks)
    def flush(self, pick: int) -> None:
        handle = self._handle(pick)
        if handle is None:
            return
        got = self.do("flush", handle.fh)
        stale = handle.upload.gone and handle.writable
        ok = self.expect(got, ("errno", errno.ESTALE) if stale else ("ok", None))
        if ok and handle.writable and handle.upload.writer == handle.fh:
            handle.upload.dirty = False

    @rule(pick=picks)
    def release(self, pick: int) -> None:
        handle = self._handle(pick)
        if handle is None:
            return
        got = self.do("release", handle.fh)
        del self.model.handles[handle.fh]
        if handle.upload.writer == handle.fh:
            handle.upload.writer, handle.upload.dirty = None, False
        self.expect(got, ("ok", None))

    @rule(repo=repos, name=names, how=st.sampled_from(["zero", "same", "grow", "shrink"]),
          by_handle=st.booleans(), pick=picks)  # fmt: skip
    def truncate(self, repo: str, name: str, how: str, by_handle: bool, pick: int) -> None:
        handle = self._handle(pick) if by_handle else None
        upload = handle.upload if handle else self.model.uploads.get((repo, name))
        path_name = next((n for (r, n), u in self.model.uploads.items() if u is upload), name)
        path = f"repositories/{upload.repo if upload else repo}/_uploads/{path_name}"
        length = len(upload.content) if upload else 0
        size = {"zero": 0, "same": length, "grow": length + 7, "shrink": length - 1}[how]
        if size < 0 or (handle is not None and handle.upload.gone):
            return  # a gone upload has no path left to truncate through
        got = self.do("truncate", path, size, handle.fh if handle else None)
        writer = handle is not None and handle.writable
        if upload is None:
            self.expect(got, ("errno", errno.ENOENT))
        elif not writer and upload.writer is not None and upload.dirty:
            self.expect(got, ("errno", errno.EBUSY))
        elif how == "shrink" and size > 0:
            self.expect(got, ("errno", errno.EINVAL))
        elif self.expect(got, ("ok", None)):
            del upload.content[size:]
            upload.content.extend(bytes(size - len(upload.content)))

    @rule(repo=repos, name=names)
    def unlink(self, repo: str, name: str) -> None:
        got = self.do("unlink", f"repositories/{repo}/_uploads/{name}")
        if (repo, name) not in self.model.uploads:
            self.expect(got, ("errno", errno.ENOENT))
        elif self.expect(got, ("ok", None)):
            self.model.remove(repo, name)
            self.model.made.add(repo)

    @rule(repo=repos, old=names, new=names, noreplace=st.booleans())
    def rename(self, repo: str, old: str, new: str, noreplace: bool) -> None:
        flags = pyfuse3.RENAME_NOREPLACE if noreplace else 0
        up = f"repositories/{repo}/_uploads"
        got = self.do("rename", f"{up}/{old}", f"{up}/{new}", flags)
        uploads = self.model.uploads
        if (repo, old) not in uploads:
            self.expect(got, ("errno", errno.ENOENT))
        elif old == new:
            self.expect(got, ("ok", None))
        elif (repo, new) in uploads and noreplace:
            self.expect(got, ("errno", errno.EEXIST))
        elif self.expect(got, ("ok", None)):
            if (repo, new) in uploads:
                self.model.remove(repo, new)
            uploads[(repo, new)] = uploads.pop((repo, old))

    @rule(repo=repos, other=repos, name=names)
    def rename_across_repositories(self, repo: str, other: str, name: str) -> None:
        if repo == other:
            return
        got = self.do(
            "rename", f"repositories/{repo}/_uploads/{name}", f"repositories/{other}/_uploads/x"
        )
        missing = (repo, name) not in self.model.uploads
        missing |= other not in self.model.visible_repos()  # no directory to rename into
        self.expect(got, ("errno", errno.ENOENT if missing else errno.EXDEV))

    @rule(repo=repos, name=names, right=st.booleans())
    def finish(self, repo: str, name: str, right: bool) -> None:
        upload = self.model.uploads.get((repo, name))
        content = bytes(upload.content) if upload else b""
        digest = Digest.of(content if right else content + b"!")
        up = f"repositories/{repo}/_uploads"
        got = self.do("rename", f"{up}/{name}", f"{up}/{digest}")
        if upload is None:
            self.expect(got, ("errno", errno.ENOENT))
        elif not right:
            self.expect(got, ("errno", errno.EBADMSG))
        elif self.expect(got, ("ok", None)):
            self.model.remove(repo, name)
            self.model.blobs[digest.hex] = content
            self.model.layers.setdefault(repo, set()).add(digest.hex)

    # link files and directories ------------------------------------------------------------
    @rule(repo=repos, pick=picks, known=st.booleans())
    def write_layer_link(self, repo: str, pick: int, known: bool) -> None:
        blobs = sorted(self.model.blobs)
        digest = blobs[pick % len(blobs)] if known else Digest.of(b"%d" % pick).hex
        folder = f"repositories/{repo}/_layers/sha256/{digest}"
        if not self.expect(self.do("makedirs", folder), ("ok", None)):
            return
        self.model.made.add(repo) if repo not in self.model.visible_repos() else None
        if digest not in self.model.layers.get(repo, set()):
            self.model.phantom_links.setdefault(repo, set()).add(digest)
        got = self.do("write_file", f"{folder}/link", f"sha256:{digest}".encode())
        if digest not in self.model.blobs:
            self.expect(got, ("errno", errno.ENOENT))
            if digest not in self.model.layers.get(repo, set()):  # its folder goes with it
                self.model.phantom_links.get(repo, set()).discard(digest)
        elif self.expect(got, ("ok", None)):
            self.model.layers.setdefault(repo, set()).add(digest)
            self.model.phantom_links.get(repo, set()).discard(digest)

    @rule(repo=repos, pick=picks)
    def unlink_layer_link(self, repo: str, pick: int) -> None:
        linked = sorted(self.model.layers.get(repo, ()))
        if not linked:
            return
        digest = linked[pick % len(linked)]
        got = self.do("unlink", f"repositories/{repo}/_layers/sha256/{digest}/link")
        if self.expect(got, ("ok", None)):
            self.model.layers[repo].discard(digest)
            self.model.made.add(repo)  # an rm keeps the folders above it in the view
            self.model.phantom_links.setdefault(repo, set()).add(digest)

    @rule(repo=repos)
    def write_revision_link(self, repo: str) -> None:
        folder = f"repositories/{repo}/_manifests/revisions/sha256/{M}"
        if not self.expect(self.do("makedirs", folder), ("ok", None)):
            return
        model = self.model
        model.made.add(repo) if repo not in model.visible_repos() else None
        got = self.do("write_file", f"{folder}/link", f"sha256:{M}".encode())
        if not model.can_register(repo):
            self.expect(got, ("errno", errno.EINVAL))  # the manifest's blobs are not linked
            if M not in model.revisions.get(repo, set()):  # its folder goes with it
                model.phantom_revisions.get(repo, set()).discard(M)
        elif self.expect(got, ("ok", None)):
            model.revisions.setdefault(repo, set()).add(M)
            model.phantom_revisions.get(repo, set()).discard(M)

    @rule(repo=repos)
    def delete_revision(self, repo: str) -> None:
        got = self.do("unlink", f"repositories/{repo}/_manifests/revisions/sha256/{M}/link")
        model = self.model
        if M not in model.revisions.get(repo, set()):
            self.expect(got, ("errno", errno.ENOENT))
        elif self.expect(got, ("ok", None)):  # the tags that name it go with it
            model.revisions[repo].discard(M)
            model.tags[repo] = {t: d for t, d in model.tags.get(repo, {}).items() if d != M}
            model.phantom_revisions.setdefault(repo, set()).add(M)
            model.made.add(repo)

    @rule(repo=repos, tag=st.sampled_from(TAGS))
    def tag(self, repo: str, tag: str) -> None:
        folder = f"repositories/{repo}/_manifests/tags/{tag}/current"
        if not self.expect(self.do("makedirs", folder), ("ok", None)):
            return
        model = self.model
        model.made.add(repo) if repo not in model.visible_repos() else None
        got = self.do("write_file", f"{folder}/link", f"sha256:{M}".encode())
        if M not in model.revisions.get(repo, set()):
            self.expect(got, ("errno", errno.ENOENT))
            # its folders go with it, but for an index/ an earlier untag left in view
            if tag not in model.tags.get(repo, {}) and tag not in model.tag_indexes.get(repo, ()):
                model.phantom_tags.get(repo, set()).discard(tag)
        elif self.expect(got, ("ok", None)):
            model.tags.setdefault(repo, {})[tag] = M
            model.phantom_tags.get(repo, set()).discard(tag)

    @rule(repo=repos, tag=st.sampled_from(TAGS))
    def untag(self, repo: str, tag: str) -> None:
        got = self.do("unlink", f"repositories/{repo}/_manifests/tags/{tag}/current/link")
        model = self.model
        if tag not in model.tags.get(repo, {}):
            self.expect(got, ("errno", errno.ENOENT))
        elif self.expect(got, ("ok", None)):  # the whole tag goes; its folders stay in view
            del model.tags[repo][tag]
            model.phantom_tags.setdefault(repo, set()).add(tag)
            model.tag_indexes.setdefault(repo, set()).add(tag)
            model.made.add(repo)

    @rule(repo=repos, name=names)
    def purge_behind_the_mount(self, repo: str, name: str) -> None:
        """Another program (purge-uploads, the registry) removes an idle upload from
        the store itself; the view shows the change once its timeout has passed."""
        upload = self.model.uploads.get((repo, name))
        if upload is None or any(h.upload is upload for h in self.model.handles.values()):
            return
        if self.faulty or self.uncertain:
            return
        model = self.model
        held = {r for r, n in model.uploads if (r, n) != (repo, name)} | model.made
        held |= {r for kind in (model.layers, model.revisions, model.tags) for r in kind if kind[r]}
        if repo not in held:  # its last entry: whether it stays in view is another matter
            return

        async def purge() -> None:
            uploads = Registry(self.store).repository(repo).uploads
            upload_id = (await uploads.by_name())[name]
            await self.store.delete(paths.upload_dir(repo, upload_id))

        self.loop.run(purge)
        self.clock.past_the_timeout()
        self.model.remove(repo, name)

    @rule()
    def mkdir_repository(self) -> None:
        got = self.do("mkdir", f"repositories/{NEW_REPO}")
        if NEW_REPO in self.model.visible_repos():
            self.expect(got, ("errno", errno.EEXIST))
        elif self.expect(got, ("ok", None)):
            self.model.made.add(NEW_REPO)

    @rule(name=names)
    def create_in_new_repository(self, name: str) -> None:
        got = self.do("create", f"repositories/{NEW_REPO}/_uploads/{name}")
        self._created(got, NEW_REPO, name, exclusive=False, trunc=False)

    @rule()
    def rmdir_new_repository(self) -> None:
        got = self.do("rmdir", f"repositories/{NEW_REPO}")
        model = self.model
        if NEW_REPO not in model.visible_repos():
            self.expect(got, ("errno", errno.ENOENT))
        elif NEW_REPO in model.stored_repos():
            self.expect(got, ("errno", errno.ENOTEMPTY))
        elif self.expect(got, ("ok", None)):
            model.made.discard(NEW_REPO)

    @rule()
    def remount(self) -> None:
        for fh, handle in sorted(self.model.handles.items()):
            stale = handle.upload.gone and handle.writable
            self.expect(self.do("flush", fh), ("errno", errno.ESTALE) if stale else ("ok", None))
            self.expect(self.do("release", fh), ("ok", None))
        faults = self.driver if isinstance(self.driver, FaultyDriver) else None
        if faults is not None:
            faults.enabled = False
        self.mount.unmount()
        self.model.remount()
        self.mount = MountedView(self.loop, self.driver)
        if faults is not None:  # after faults: the store is sound and every file reads
            self.loop.run(check_store, self.store)
            self.loop.run(read_everything, self.k)
            self.resync()
            faults.enabled = True

    def resync(self) -> None:
        """After faults, take the store's word for what it holds."""
        model = Model()
        for repo in (*REPOS, NEW_REPO):
            got = self.do("listdir", f"repositories/{repo}/_uploads")
            for name in got[1] if got[0] == "ok" else []:
                content = self.do("read_file", f"repositories/{repo}/_uploads/{name}")
                assert content[0] == "ok", content
                model.uploads[(repo, name)] = MUpload(repo, bytearray(content[1]))
            got = self.do("listdir", f"repositories/{repo}/_layers/sha256")
            model.layers[repo] = set(got[1]) if got[0] == "ok" else set()
        model.blobs.update(self.loop.run(stored_blobs, self.store))
        self.model = model
        self.uncertain = False

    # what always holds ---------------------------------------------------------------------
    @invariant()
    def the_view_lists_what_the_model_holds(self) -> None:
        if self.faulty or self.uncertain:
            return
        model = self.model
        got = self.do("listdir", "repositories")
        assert got == ("ok", sorted(model.visible_repos())), got
        for repo in model.visible_repos():
            assert self.do("listdir", f"repositories/{repo}/_uploads") == (
                "ok",
                model.names(repo),
            )
            linked = model.layers.get(repo, set()) | model.phantom_links.get(repo, set())
            got = self.do("listdir", f"repositories/{repo}/_layers/sha256")
            assert got == ("ok", sorted(linked)) or (not linked and got[0] == "errno"), got
            revisions = model.revisions.get(repo, set()) | model.phantom_revisions.get(repo, set())
            got = self.do("listdir", f"repositories/{repo}/_manifests/revisions/sha256")
            assert got == ("ok", sorted(revisions)) or (not revisions and got[0] == "errno"), got
            tags = set(model.tags.get(repo, {})) | model.phantom_tags.get(repo, set())
            got = self.do("listdir", f"repositories/{repo}/_manifests/tags")
            assert got == ("ok", sorted(tags)), got

    @invariant()
    def the_store_is_sound(self) -> None:
        self.loop.run(check_store, self.store)

    @invariant()
    def handles_are_counted(self) -> None:
        state = self.k.ops.state
        assert len(state.handles) == len(self.model.handles)
        live = {id(h.upload) for h in self.model.handles.values() if not h.upload.gone}
        if not (self.faulty or self.uncertain):
            assert len(state.uploads.sessions) == len(live)

    @precondition(lambda self: not self.faulty and not self.uncertain)
    @invariant()
    def uploads_hold_what_was_written(self) -> None:
        for (repo, name), upload in self.model.uploads.items():
            if any(h.upload is upload and h.writable for h in self.model.handles.values()):
                continue  # read back through its own handle, in ``read``
            got = self.do("read_file", f"repositories/{repo}/_uploads/{name}")
            assert got == ("ok", bytes(upload.content)), (repo, name)


async def stored_blobs(store: MemoryDriver) -> dict[str, bytes]:
    found = {}
    for algorithm_dir in await store.list_if_present(f"{paths.BLOBS}/sha256"):
        for blob_dir in await store.list_if_present(algorithm_dir):
            with contextlib.suppress(Exception):
                found[blob_dir.rsplit("/", 1)[1]] = await store.get_content(f"{blob_dir}/data")
    return found


async def read_everything(kernel: Kernel, path: str = "") -> None:
    """``find`` and ``cat`` of the whole view: every entry answers, none with an errno."""
    for name in await kernel.listdir(path):
        child = f"{path}/{name}" if path else name
        attrs = await kernel.stat(child)
        if attrs.st_mode & 0o040000:
            await read_everything(kernel, child)
        else:
            await kernel.read_file(child)


async def check_store(store: MemoryDriver) -> None:
    """What no request may break: every blob's bytes hash to its name, every layer
    link names a blob that is there, every upload directory has its ``startedat``."""
    blobs = await stored_blobs(store)
    for hexpart, content in blobs.items():
        assert hashlib.sha256(content).hexdigest() == hexpart, f"blob {hexpart} is damaged"
    for repo in (*REPOS, NEW_REPO):
        for link_dir in await store.list_if_present(f"{paths.layers_dir(repo)}/sha256"):
            link = f"{link_dir}/link"
            if await store.exists(link):
                target = (await store.get_content(link)).decode()
                assert target.split(":", 1)[1] in blobs, f"{link} names {target}, not stored"
        registry = Registry(store).repository(repo)
        for revision in await registry.manifests.digests():
            link = paths.manifest_revision_link(repo, revision)
            if await store.exists(link):
                assert (await store.get_content(link)).decode().split(":")[1] in blobs, link
        for tag in await registry.tags.list():  # every tag the registry lists, it serves
            assert await registry.manifests.exists(await registry.tags.resolve(tag)), tag
        for upload_dir in await store.list_if_present(paths.uploads_dir(repo)):
            upload_id = upload_dir.rsplit("/", 1)[1]
            assert UUID_RE.fullmatch(upload_id), upload_dir
            assert await store.exists(f"{upload_dir}/startedat"), f"{upload_dir}: no startedat"


class FaultyViewMachine(ViewMachine):
    """The same requests over a driver that fails or delays any call at random."""

    faulty = True

    def make_driver(self, store: MemoryDriver) -> StorageDriver:
        return FaultyDriver(store, seed=0)

    @initialize(seed=st.integers(0, 1 << 32), rate=st.sampled_from([0.02, 0.08, 0.2]))
    def faults(self, seed: int, rate: float) -> None:
        """Which calls fail is drawn with the example, so a failure replays."""
        assert isinstance(self.driver, FaultyDriver)
        self.driver.random.seed(seed)
        self.driver.rate = rate
