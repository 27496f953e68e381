"""``kill -9`` of the daemon during a cp and during a mv, at random moments: after a
new mount no blob differs from its name, every finished layer is linked, and every
interrupted upload can be finished (resumed with ``cat >>``) or cancelled."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from .mounts import LAYERFS, Mount

REPO = "repositories/crash/test"
ROUNDS = 8


def check_store(root: Path) -> None:
    """Blobs hash to their names; layer links parse and point at blobs."""
    v2 = root / "docker/registry/v2"
    for data in (v2 / "blobs").rglob("data"):
        h = hashlib.sha256()
        with open(data, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        assert h.hexdigest() == data.parent.name, f"blob {data} differs from its name"
    for link in (v2 / "repositories").rglob("_layers/*/*/link"):
        target = link.read_text()
        hexpart = target.split(":")[1]
        assert (v2 / "blobs/sha256" / hexpart[:2] / hexpart / "data").exists(), link


def uuids(root: Path) -> list[str]:
    uploads = root / "docker/registry/v2" / REPO / "_uploads"
    return [p.name for p in uploads.iterdir()] if uploads.exists() else []


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "source"
    rng = random.Random(11)
    path.write_bytes(rng.randbytes(96 << 20))
    return path, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_during_cp_and_mv(store_dir: Path, tmp_path: Path, source: tuple[Path, str]) -> None:
    path, digest = source
    size = path.stat().st_size
    rng = random.Random(5)
    mnt = tmp_path / "mnt"
    finished = []
    for round_ in range(ROUNDS):
        mount = Mount(store_dir, mnt, tmp_path / f"log{round_}").start()
        repo = mnt / REPO
        repo.mkdir(parents=True, exist_ok=True)
        name = f"u{round_}"
        during_mv = round_ % 2 == 1
        if during_mv:
            subprocess.run(["cp", str(path), str(repo / "_uploads" / name)], check=True)
            worker = subprocess.Popen(
                ["mv", str(repo / "_uploads" / name), str(repo / "_uploads" / digest)],
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0, 0.05))
        else:
            worker = subprocess.Popen(
                ["cp", str(path), str(repo / "_uploads" / name)], stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0.05, 0.6))
        mount.kill()
        worker.wait(30)
        check_store(store_dir)

        mount = Mount(store_dir, mnt, tmp_path / f"log{round_}b").start()
        try:
            uploads = repo / "_uploads"
            left = os.listdir(uploads)
            link = repo / "_layers/sha256" / digest[7:] / "link"
            if not left and not link.exists():
                # killed before the upload was created: nothing was stored, nothing to do
                assert not during_mv
                check_store(store_dir)
                continue
            if left:
                # under its name, or under its uuid when the kill came before the name
                # was written beside it (UPLOADS.md)
                assert len(left) == 1 and left[0] in (name, *uuids(store_dir)), left
                name = left[0]
                have = (uploads / name).stat().st_size
                assert have <= size
                with open(uploads / name, "rb") as f:
                    assert f.read(have) == path.read_bytes()[:have]
                if round_ % 4 == 3:
                    os.unlink(uploads / name)  # cancel
                    assert name not in os.listdir(uploads)
                    continue
                with open(path, "rb") as rest:
                    rest.seek(have)
                    subprocess.run(
                        ["bash", "-c", f"cat >> {uploads / name}"], stdin=rest, check=True
                    )
                subprocess.run(["mv", str(uploads / name), str(uploads / digest)], check=True)
            assert link.read_text() == digest
            finished.append(round_)
            check_store(store_dir)
        finally:
            mount.stop()
        # the next round starts from scratch: unlink so the blob must be written again
        link_dir = store_dir / "docker/registry/v2" / REPO / "_layers/sha256" / digest[7:]
        subprocess.run(["rm", "-rf", str(link_dir)], check=True)
        blob = store_dir / "docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:]
        subprocess.run(["rm", "-rf", str(blob)], check=True)
    assert len(finished) >= ROUNDS // 2
    # A kill inside the create's first write leaves a directory with only a hidden
    # temporary file: not an upload, so the mount shows nothing; purge-uploads clears it.
    uploads = store_dir / "docker/registry/v2" / REPO / "_uploads"
    for leftover in os.listdir(uploads):
        assert all(".tmp-" in f.name for f in (uploads / leftover).iterdir()), leftover
    subprocess.run([LAYERFS, "purge-uploads", "--older-than", "0s", str(store_dir)], check=True)
    assert os.listdir(uploads) == []
