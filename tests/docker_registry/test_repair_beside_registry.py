"""fsck --repair while docker-registry writes. The registry writes a tag's
``current/link`` in place: open, truncate, write. Held between the truncate and
the write (strace delays that one write), the link is empty, which is no digest.
A repair must not remove the tag then: the registry's PUT answers 201 and the tag
would be gone. And a push between fsck's listing of the blobs and its reading of
the repositories leaves revisions and tags naming blobs the check never listed: the
second look before a removal finds them there."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
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


def fsck(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LAYERFS, "fsck", *args, str(store)], capture_output=True, text=True, timeout=60
    )


def push_two_tags(store: Path, tmp_path: Path) -> tuple[str, bytes, str]:
    """app/a:v1 and app/a:v2, pushed by skopeo; returns v2's manifest digest, its
    bytes and media type."""
    registry = DockerRegistry(tmp_path, {"filesystem": {"rootdirectory": str(store)}}).start()
    try:
        for seed, tag in [(41, "v1"), (42, "v2")]:
            layout = write_oci_layout(make_image(seed=seed), tmp_path / tag, tag)
            skopeo_push(layout, tag, registry, f"app/a:{tag}")
    finally:
        registry.stop()
    tags = store / V2 / "repositories/app/a/_manifests/tags"
    digest = (tags / "v2/current/link").read_text()
    hex_ = digest.removeprefix("sha256:")
    payload = (store / V2 / f"blobs/sha256/{hex_[:2]}/{hex_}/data").read_bytes()
    return digest, payload, json.loads(payload)["mediaType"]


def wait_for_empty(path: Path) -> None:
    deadline = time.monotonic() + HELD / 2
    while path.stat().st_size != 0:
        assert time.monotonic() < deadline, "the registry never truncated the link"
        time.sleep(0.01)


def test_a_tag_the_registry_is_moving_is_not_repaired_away(tmp_path: Path) -> None:
    store = tmp_path / "store"
    digest, payload, media_type = push_two_tags(store, tmp_path)
    link = store / V2 / "repositories/app/a/_manifests/tags/v1/current/link"
    assert fsck(store).returncode == 0
    traced = ["strace", "-f", "-qq", "-o", os.devnull, "-P", str(link), "-e", "trace=write",
              "-e", f"inject=write:delay_enter={int(HELD * 1e6)}"]  # fmt: skip
    registry = DockerRegistry(tmp_path, {"filesystem": {"rootdirectory": str(store)}})
    registry.start(under=traced)
    try:
        answer: list[Response] = []
        put = threading.Thread(
            target=lambda: answer.append(
                registry.request(
                    "PUT", "/v2/app/a/manifests/v1", payload, {"Content-Type": media_type}
                )
            )
        )
        put.start()  # v1 moves to v2's manifest
        wait_for_empty(link)
        repair = fsck(store, "--repair")
        held = link.stat().st_size == 0  # the write was still held when fsck ended
        put.join(HELD * 3)
        assert held and answer and answer[0].status == 201, (answer, repair.stdout)
        assert repair.returncode == 4, repair.stdout + repair.stderr
        assert "link-invalid" in repair.stdout and "within the grace" in repair.stdout
        assert "0 repaired" in repair.stdout
        assert link.read_text() == digest
        served = registry.get_manifest("app/a", "v1", media_type)
        assert served.status == 200 and served.headers["Docker-Content-Digest"] == digest
    finally:
        registry.stop()
    assert fsck(store, "--repair").returncode == 0


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
