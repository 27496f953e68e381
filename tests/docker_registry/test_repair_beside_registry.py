"""fsck --repair while docker-registry moves a tag. The registry writes a tag's
``current/link`` in place: open, truncate, write. Held between the truncate and
the write (strace delays that one write), the link is empty, which is no digest.
A repair must not remove the tag then: the registry's PUT answers 201 and the tag
would be gone."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from ..images import make_image, write_oci_layout
from ..mounts import LAYERFS
from ..registry import DockerRegistry, Response, skopeo_push

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
