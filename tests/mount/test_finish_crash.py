"""``kill -9`` at every step of a finish, on disk and on S3 (layerfs/faults.py names
the steps, layerfs/storage/UPLOADS.md says what each leaves): every byte is still
somewhere, no link names a blob that is not whole, and the same ``mv`` again
completes the finish. A store left by the old S3 defect (a link to a blob whose copy
never completed) is found by fsck and repaired from the upload, and gc and
purge-uploads keep the last copy until then."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from layerfs.faults import ENV, POINTS

from ..conftest import Store
from ..mounts import LAYERFS, Mount
from ..stores import V2
from .test_crash import check_store

REPO = "repositories/crash/finish"
SIZE = 40 << 20  # above S3's single-copy limit (32 MiB): the copy goes in parts
S3_ONLY = {"move:copy-under-way", "move:copied"}  # a rename on disk has no such step


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("finish-crash") / "layer"
    path.write_bytes(os.urandom(SIZE))
    return path, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def blob_rel(digest: str) -> str:
    return f"{V2}/blobs/sha256/{digest[7:9]}/{digest[7:]}/data"


def link_rel(digest: str) -> str:
    return f"{V2}/{REPO}/_layers/sha256/{digest[7:]}/link"


def upload_data(store: Store) -> list[str]:
    return [f for f in store.files(f"{V2}/{REPO}/_uploads") if f.endswith("/data")]


def layerfs(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **store.env}
    return subprocess.run([LAYERFS, *args], capture_output=True, text=True, env=env)


def killed_while_finishing(
    store: Store, tmp_path: Path, source: tuple[Path, str], point: str
) -> None:
    """cp, then mv with the daemon set to die at ``point``; the dead mount cleared."""
    path, digest = source
    mount = Mount(store.spec, tmp_path / "mnt", tmp_path / "log1", env={**store.env, ENV: point})
    mount.start()
    uploads = mount.mountpoint / REPO / "_uploads"
    (mount.mountpoint / REPO).mkdir(parents=True)
    subprocess.run(["cp", str(path), str(uploads / "layer")], check=True)
    mv = subprocess.run(["mv", str(uploads / "layer"), str(uploads / digest)], capture_output=True)
    assert mv.returncode != 0, "the daemon was to die inside this finish"
    deadline = time.monotonic() + 30
    while mount.process is not None and mount.process.poll() is None:
        assert time.monotonic() < deadline, f"the daemon did not die at {point}"
        time.sleep(0.05)
    assert mount.process is not None and mount.process.returncode == -9
    mount.kill()  # clears the dead mount


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_every_step_of_a_finish(
    store: Store, tmp_path: Path, source: tuple[Path, str], point: str
) -> None:
    if store.kind != "s3" and point in S3_ONLY:
        pytest.skip("a rename on disk has no copy to be cut short")  # by design, not a gap
    path, digest = source
    data = path.read_bytes()
    killed_while_finishing(store, tmp_path, source, point)

    # every byte is still somewhere: in the blob, whole, or in the upload
    check_store(store)  # blobs hash to their names; every link names a stored blob
    in_blob = store.exists(blob_rel(digest)) and store.read(blob_rel(digest)) == data
    in_upload = any(store.read(f) == data for f in upload_data(store))
    assert in_blob or in_upload, f"after a kill at {point} the bytes are nowhere"

    # the same mv again completes the finish
    mount = Mount(store.spec, tmp_path / "mnt", tmp_path / "log2", env=store.env).start()
    try:
        uploads = mount.mountpoint / REPO / "_uploads"
        left = os.listdir(uploads) if uploads.exists() else []
        if left:  # a mount's start completes a finish cut short after its move, maybe
            assert left == ["layer"], left  # while this lists: then mv finds no upload
            mv = subprocess.run(
                ["mv", str(uploads / "layer"), str(uploads / digest)], capture_output=True
            )
            assert mv.returncode == 0 or b"No such file" in mv.stderr, mv.stderr
        link = mount.mountpoint / REPO / "_layers/sha256" / digest[7:] / "link"
        assert link.read_text() == digest
        assert not (os.listdir(uploads) if uploads.exists() else [])
    finally:
        mount.stop()
    assert store.read(blob_rel(digest)) == data
    check_store(store)
    fsck = layerfs(store, "fsck", store.spec)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


@pytest.mark.parametrize("store", ["s3"], indirect=True)
def test_a_link_to_an_unfinished_copy_is_repaired_from_its_upload(
    store: Store, tmp_path: Path, source: tuple[Path, str]
) -> None:
    """The state the old defect left: the link written although the blob's copy never
    completed. fsck names it, gc keeps the link, purge-uploads keeps the upload, and
    fsck --repair finishes it from the upload."""
    path, digest = source
    killed_while_finishing(store, tmp_path, source, "move:copy-under-way")
    assert blob_rel(digest) in store.pending_writes() and not store.exists(blob_rel(digest))
    store.client.put_object(
        Bucket=store.bucket, Key=f"{store.prefix}/{link_rel(digest)}", Body=digest.encode()
    )

    fsck = layerfs(store, "fsck", store.spec)
    assert fsck.returncode != 0 and "blob-copy-unfinished" in fsck.stdout + fsck.stderr, fsck
    gc = layerfs(store, "gc", "--grace", "0s", store.spec)
    assert gc.returncode == 0, gc.stderr
    assert store.exists(link_rel(digest)), "gc deleted the only link to bytes an upload holds"
    purge = layerfs(store, "purge-uploads", "--older-than", "0s", store.spec)
    assert purge.returncode == 0, purge.stderr
    assert [store.read(f) for f in upload_data(store)] == [path.read_bytes()]

    repair = layerfs(store, "fsck", "--repair", store.spec)
    assert repair.returncode == 1, repair.stdout + repair.stderr  # all findings repaired
    assert store.read(blob_rel(digest)) == path.read_bytes()
    assert upload_data(store) == []
    check_store(store)
    assert layerfs(store, "fsck", store.spec).returncode == 0


@pytest.mark.parametrize("store", ["s3"], indirect=True)
def test_a_pending_copy_is_no_blob(store: Store, tmp_path: Path) -> None:
    """What a kill inside the S3 copy leaves, made by hand: the upload whole and a
    multipart upload pending on the blob's key. The next finish must copy afresh
    (an older version took the pending key for the blob, linked it and deleted the
    upload: the bytes were gone)."""
    data = os.urandom(6 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    mount = Mount(store.spec, tmp_path / "mnt", tmp_path / "log1", env=store.env).start()
    try:
        uploads = mount.mountpoint / REPO / "_uploads"
        (mount.mountpoint / REPO).mkdir(parents=True)
        (uploads / "layer").write_bytes(data)
    finally:
        mount.stop()
    key = f"{store.prefix}/{blob_rel(digest)}"
    pending = store.client.create_multipart_upload(Bucket=store.bucket, Key=key)
    store.client.upload_part(
        Bucket=store.bucket, Key=key, UploadId=pending["UploadId"], PartNumber=1,
        Body=data[: 5 << 20],
    )  # fmt: skip
    mount = Mount(store.spec, tmp_path / "mnt", tmp_path / "log2", env=store.env).start()
    try:
        uploads = mount.mountpoint / REPO / "_uploads"
        os.rename(uploads / "layer", uploads / digest)
    finally:
        mount.stop()
    assert store.read(blob_rel(digest)) == data
    check_store(store)
