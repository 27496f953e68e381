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

from ..conftest import Store
from ..mounts import LAYERFS, Mount
from ..stores import V2

REPO = "repositories/crash/test"
ROUNDS = 8


def check_store(store: Store) -> None:
    """Blobs hash to their names; layer links parse and point at blobs."""
    for name in store.files(f"{V2}/blobs"):
        if name.endswith("/data"):
            hexpart = name.rsplit("/", 2)[1]
            assert hashlib.sha256(store.read(name)).hexdigest() == hexpart, f"{name} differs"
    for name in store.files(f"{V2}/repositories"):
        if "/_layers/" in name and name.endswith("/link"):
            hexpart = store.read(name).decode().split(":")[1]
            assert store.exists(f"{V2}/blobs/sha256/{hexpart[:2]}/{hexpart}/data"), name


def upload_dirs(store: Store) -> set[str]:
    """Upload directories as the store holds them (by uuid)."""
    base = f"{V2}/{REPO}/_uploads"
    return {name[len(base) + 1 :].split("/")[0] for name in store.files(base)}


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "source"
    rng = random.Random(11)
    path.write_bytes(rng.randbytes(96 << 20))
    return path, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_during_cp_and_mv(store: Store, tmp_path: Path, source: tuple[Path, str]) -> None:
    path, digest = source
    size = path.stat().st_size
    rng = random.Random(5)
    mnt = tmp_path / "mnt"
    finished = []
    for round_ in range(ROUNDS):
        mount = Mount(store.spec, mnt, tmp_path / f"log{round_}", env=store.env).start()
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
        check_store(store)

        mount = Mount(store.spec, mnt, tmp_path / f"log{round_}b", env=store.env).start()
        try:
            uploads = repo / "_uploads"
            # on S3 a repository with nothing stored in it does not exist
            left = os.listdir(uploads) if uploads.exists() else []
            link = repo / "_layers/sha256" / digest[7:] / "link"
            if not left and not link.exists():
                # killed before the upload was created: nothing was stored, nothing to do
                assert not during_mv
                check_store(store)
                continue
            if left:
                # under its name, or under its uuid when the kill came before the name
                # was written beside it (UPLOADS.md)
                assert len(left) == 1 and left[0] in (name, *upload_dirs(store)), left
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
            check_store(store)
        finally:
            mount.stop()
        # the next round starts from scratch: unlink so the blob must be written again
        store.remove(f"{V2}/{REPO}/_layers/sha256/{digest[7:]}")
        store.remove(f"{V2}/blobs/sha256/{digest[7:9]}/{digest[7:]}")
    assert len(finished) >= ROUNDS // 2
    # A kill inside the create's first write leaves, on a filesystem, a directory with
    # only a hidden temporary file: not an upload, so the mount shows nothing; and a
    # kill inside a server-side copy on S3 leaves that copy pending. purge-uploads
    # clears both, and nothing else may be left.
    for leftover in upload_dirs(store):
        files = store.files(f"{V2}/{REPO}/_uploads/{leftover}")
        assert all(".tmp-" in f for f in files), files
    assert all(key.startswith(f"{V2}/blobs/") for key in store.pending_writes())
    purge = [LAYERFS, "purge-uploads", "--older-than", "0s", store.spec]
    subprocess.run(purge, check=True, env={**os.environ, **store.env})
    assert upload_dirs(store) == set() and store.pending_writes() == []
