"""A shell rewriting a tag while others read it, on a kernel FUSE mount: the
rewrite's opening flush is no write (nothing refused, nothing logged), and no reader
sees an empty or partial tag."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..mounts import Mount
from .test_mount import REPO, push_image_through_mount

REWRITES = 1500


def test_rewriting_a_tag_beside_readers(mount: Mount, tmp_path: Path) -> None:
    repo = mount.mountpoint / REPO
    repo.mkdir(parents=True)
    digest, _ = push_image_through_mount(repo, tmp_path, 61)
    link = repo / "_manifests/tags/v1/current/link"
    writer = subprocess.Popen(
        ["bash", "-c", f"for i in $(seq {REWRITES}); do echo {digest} > {link}; done"],
        stderr=subprocess.PIPE,
        text=True,
    )
    reads: dict[str, int] = {}
    while writer.poll() is None:
        got = subprocess.run(["cat", str(link)], capture_output=True, text=True)
        reads[got.stdout] = reads.get(got.stdout, 0) + 1
    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    assert set(reads) == {digest + "\n", digest}.intersection(reads) and reads, reads
    log = mount.log_text()
    assert "flush refused" not in log and "invalid digest ''" not in log, log[-2000:]
