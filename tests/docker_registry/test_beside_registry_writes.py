"""Deleting commands while docker-registry writes. The registry writes a tag's
``current/link`` in place: open, truncate, write. Held between the truncate and the
write (strace delays that one write), the link is empty, which is no digest. Neither
fsck --repair nor gc --delete-untagged may delete on that reading: the registry's
PUT answers 201 and the tag would be gone (the registry's own collector fails its
mark there). And a push between fsck's listing of the blobs and its reading of the
repositories leaves revisions and tags naming blobs the check never listed: the
second look before a removal finds them there. prune, too, deletes nothing of a
repository with a tag caught empty."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import trio

from layerfs.passes.fsck import Fsck
from layerfs.passes.fsck.base import CheckedUpload

from ..conftest import Store
from ..images import make_image, write_oci_layout
from ..mounts import LAYERFS
from ..registry import DockerRegistry, Response, skopeo_pull, skopeo_push

HELD = 6.0  # seconds strace holds the registry's write of the link
V2 = "docker/registry/v2"


def layerfs(command: str, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LAYERFS, command, *args, str(store)], capture_output=True, text=True, timeout=60
    )


@dataclass
class Pushed:
    store: Path
    digests: dict[str, str]  # tag -> manifest digest
    payloads: dict[str, bytes]  # tag -> manifest bytes
    media_type: str

    def link(self, tag: str) -> Path:
        return self.store / V2 / f"repositories/app/a/_manifests/tags/{tag}/current/link"

    def revision(self, tag: str) -> Path:
        hex_ = self.digests[tag].removeprefix("sha256:")
        return self.store / V2 / f"repositories/app/a/_manifests/revisions/sha256/{hex_}/link"

    def files(self) -> dict[str, int]:
        """Every file with its size: what a delete would change."""
        return {str(path): path.stat().st_size for path in self.store.rglob("*") if path.is_file()}


def push_two_tags(tmp_path: Path) -> Pushed:
    """app/a:v1 and app/a:v2, pushed by skopeo to a registry over a directory."""
    store = tmp_path / "store"
    registry = DockerRegistry(tmp_path, {"filesystem": {"rootdirectory": str(store)}}).start()
    try:
        for seed, tag in [(41, "v1"), (42, "v2")]:
            layout = write_oci_layout(make_image(seed=seed), tmp_path / tag, tag)
            skopeo_push(layout, tag, registry, f"app/a:{tag}")
    finally:
        registry.stop()
    pushed = Pushed(store, {}, {}, "")
    for tag in ["v1", "v2"]:
        digest = pushed.link(tag).read_text()
        hex_ = digest.removeprefix("sha256:")
        pushed.digests[tag] = digest
        pushed.payloads[tag] = (store / V2 / f"blobs/sha256/{hex_[:2]}/{hex_}/data").read_bytes()
    pushed.media_type = json.loads(pushed.payloads["v1"])["mediaType"]
    return pushed


@contextlib.contextmanager
def write_held(
    pushed: Pushed, tmp_path: Path, tag: str, to: str, revision: bool = False
) -> Iterator[DockerRegistry]:
    """The registry PUTs ``to``'s manifest as ``tag`` and is held (strace) between the
    truncate and the write of the tag's link (with ``revision``, of the manifest's
    revision link) for HELD seconds: the body runs then. The PUT answers 201
    afterwards, and the link holds the manifest's digest."""
    link = pushed.revision(to) if revision else pushed.link(tag)
    traced = ["strace", "-f", "-qq", "-o", os.devnull, "-P", str(link), "-e", "trace=write",
              "-e", f"inject=write:delay_enter={int(HELD * 1e6)}"]  # fmt: skip
    storage = {"filesystem": {"rootdirectory": str(pushed.store)}}
    registry = DockerRegistry(tmp_path, storage).start(under=traced)
    try:
        answer: list[Response] = []
        body, headers = pushed.payloads[to], {"Content-Type": pushed.media_type}
        put = threading.Thread(
            target=lambda: answer.append(
                registry.request("PUT", f"/v2/app/a/manifests/{tag}", body, headers)
            )
        )
        put.start()
        deadline = time.monotonic() + HELD / 2
        while link.stat().st_size != 0:
            assert time.monotonic() < deadline, "the registry never truncated the link"
            time.sleep(0.01)
        yield registry
        assert link.stat().st_size == 0, "the body outlasted the held write"
        put.join(HELD * 3)
        assert answer and answer[0].status == 201, answer
        assert link.read_text() == pushed.digests[to]
        served = registry.get_manifest("app/a", tag, pushed.media_type)
        assert served.status == 200, served
        assert served.headers["Docker-Content-Digest"] == pushed.digests[to]
    finally:
        registry.stop()


def test_a_tag_the_registry_is_moving_is_not_repaired_away(tmp_path: Path) -> None:
    pushed = push_two_tags(tmp_path)
    assert layerfs("fsck", pushed.store).returncode == 0
    with write_held(pushed, tmp_path, "v1", to="v2"):  # v1 moves to v2's manifest
        repair = layerfs("fsck", pushed.store, "--repair")
    assert repair.returncode == 4, repair.stdout + repair.stderr
    assert "link-invalid" in repair.stdout and "within the grace" in repair.stdout
    assert "0 repaired" in repair.stdout
    assert layerfs("fsck", pushed.store, "--repair").returncode == 0


def test_gc_of_untagged_manifests_waits_for_a_tag_being_written(tmp_path: Path) -> None:
    """A push of the same image again rewrites its tag's link with the same digest.
    Caught empty, the tag names nothing; untagged manifests are then unknown, and
    neither the registry's collector nor layerfs gc deletes one."""
    pushed = push_two_tags(tmp_path)
    before = pushed.files()
    with write_held(pushed, tmp_path, "v1", to="v1") as registry:
        theirs = registry.garbage_collect("--delete-untagged", "--dry-run")
        ours = layerfs("gc", pushed.store, "--delete-untagged", "--grace", "0s")
    assert "failed to mark" in theirs.stdout + theirs.stderr, theirs
    assert ours.returncode != 0 and "nothing deleted" in ours.stderr, ours.stdout + ours.stderr
    assert "unreadable: app/a:v1: link file" in ours.stdout + ours.stderr
    assert pushed.files() == before  # the link is whole again, with the same digest
    again = layerfs("gc", pushed.store, "--delete-untagged", "--grace", "0s")
    assert again.returncode == 0 and pushed.files() == before, again.stdout + again.stderr


class PushedMeanwhile(Fsck):
    """A repair with no grace, so that only its second look stands between a push
    and a removal; the push runs once the blobs were listed and stated."""

    def __init__(self, store: Store, push: Callable[[], None]) -> None:
        super().__init__(store.driver(), repair=True, grace=timedelta(0))
        self.push: Callable[[], None] | None = push

    async def _list_uploads(self) -> list[CheckedUpload]:
        if self.push is not None:
            await trio.to_thread.run_sync(self.push)
            self.push = None
        return await super()._list_uploads()


async def test_a_push_during_a_repair_is_not_repaired_away(
    store: Store, store_registry: DockerRegistry, tmp_path: Path
) -> None:
    layout = write_oci_layout(make_image(seed=43), tmp_path / "one", "v1")
    skopeo_push(layout, "v1", store_registry, "app/a:v1")

    def push() -> None:  # a new repository, and a new tag in one fsck has listed
        for seed, reference in [(44, "app/b:v1"), (45, "app/a:v2")]:
            tag = reference.rsplit(":", 1)[1]
            skopeo_push(write_oci_layout(make_image(seed=seed), tmp_path / str(seed), tag),
                        tag, store_registry, reference)  # fmt: skip

    check = PushedMeanwhile(store, push)
    report = await check.run()
    await check.driver.aclose()
    assert check.push is None
    if store.kind == "filesystem":  # app/a's repository is read after the push
        assert sorted(f.kind for f in report.findings) == ["link-dangling", "tag-dangling"]
    # on S3 the listing made first holds the whole store: the push is not seen at all
    assert not [f for f in report.findings if f.removed], report.findings
    for finding in report.findings:  # what it found of the push, it looked at again
        assert finding.kept == "changed since it was read: looked at again, no longer so"
    for reference in ["app/a:v1", "app/b:v1", "app/a:v2"]:
        skopeo_pull(store_registry, reference, tmp_path / reference.replace("/", "-"))
    assert (await Fsck(store.driver(), repair=True, grace=timedelta(0)).run()).clean


def test_gc_waits_for_a_revision_being_written(tmp_path: Path) -> None:
    """A push of the same image again also rewrites the manifest's revision link in
    place. Caught empty, that manifest is unknown: the registry's collector fails,
    layerfs gc deletes nothing, and a repair keeps the link."""
    pushed = push_two_tags(tmp_path)
    before = pushed.files()
    with write_held(pushed, tmp_path, "v1", to="v1", revision=True) as registry:
        theirs = registry.garbage_collect("--dry-run")
        ours = layerfs("gc", pushed.store, "--grace", "0s")
        repair = layerfs("fsck", pushed.store, "--repair")
    assert theirs.returncode != 0 and "failed to mark" in theirs.stdout + theirs.stderr
    assert ours.returncode != 0 and "deleted nothing" in ours.stderr, ours.stdout + ours.stderr
    assert f"unreadable: app/a@{pushed.digests['v1']}: link file" in ours.stderr
    assert repair.returncode == 4 and "0 repaired" in repair.stdout, repair.stdout
    assert pushed.files() == before  # the link is whole again, with the same digest
    again = layerfs("gc", pushed.store, "--grace", "0s")
    assert again.returncode == 0 and pushed.files() == before, again.stdout + again.stderr


def test_prune_waits_for_a_tag_being_written(tmp_path: Path) -> None:
    """prune reads every tag of a repository it plans for: a tag caught empty makes
    the repository unknown, and nothing of it is deleted (``--keep-last 0`` would
    delete every tag of it)."""
    pushed = push_two_tags(tmp_path)
    before = pushed.files()
    command = [LAYERFS, "prune", "--keep-last", "0", "--yes", str(pushed.store), "app/a"]
    with write_held(pushed, tmp_path, "v2", to="v2"):
        pruned = subprocess.run(command, capture_output=True, text=True, timeout=60)
    out = pruned.stdout + pruned.stderr
    assert pruned.returncode == 1 and "deleted nothing" in out, out
    assert "tags/v2/current/link does not hold a digest" in out
    assert pushed.files() == before
