"""A store that fails: an S3 endpoint that never answers or has no such bucket, a
disk that fills up, a file system remounted read-only. Every request ends within
the deadline with a fitting errno (EIO, ENOSPC, EROFS) and a log line without a
traceback; every command exits 8 with a line naming the store; an upload cut off
by a full disk resumes once there is room."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..mounts import Mount, assert_refused, run_layerfs
from ..seaweed import SeaweedFS

AWS = {"AWS_ACCESS_KEY_ID": "any", "AWS_SECRET_ACCESS_KEY": "any", "AWS_REGION": "us-east-1"}
HANG = 90  # seconds after which a command counts as hung (the deadline below is 2 s)


def layerfs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_layerfs(*args, env=env, timeout=HANG)


def failed_naming(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert_refused(result, 8, *words)


@pytest.mark.parametrize(
    "command",
    [
        ["fsck", "s3://bucket/root"],
        ["gc", "--dry-run", "s3://bucket/root"],
        ["purge-uploads", "s3://bucket/root"],
        ["export", "s3://bucket/root", "app:v1", "OUT"],
        ["import", "IN", "s3://bucket/root", "app:v1"],
    ],
    ids=lambda c: c[0],
)
def test_commands_on_a_silent_endpoint_exit_8_naming_it(
    silent_endpoint: str, tmp_path: Path, command: list[str]
) -> None:
    from ..images import make_image, write_oci_layout

    layout = write_oci_layout(make_image(seed=3, layers=1), tmp_path / "in", "v1")
    args = [{"OUT": str(tmp_path / "out"), "IN": f"oci:{layout}:v1"}.get(a, a) for a in command]
    env = {**AWS, "AWS_ENDPOINT_URL": silent_endpoint, "LAYERFS_S3_TIMEOUT": "2"}
    failed_naming(layerfs(*args, env=env), silent_endpoint, "did not answer within 2 s")


def test_a_missing_bucket_is_a_store_failure(seaweedfs: SeaweedFS) -> None:
    env = {**seaweedfs.aws_env()}
    for command in (["fsck"], ["gc", "--dry-run"], ["purge-uploads"]):
        result = layerfs(*command, f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x", env=env)
        failed_naming(result, "NoSuchBucket")


def test_a_silent_endpoint_gives_eio_within_the_deadline(
    silent_endpoint: str, tmp_path: Path
) -> None:
    mount = Mount(
        "s3://bucket/root", tmp_path / "mnt", tmp_path / "layerfs.log",
        "-o", f"endpoint={silent_endpoint},timeout=2", env=AWS,
    ).start()  # fmt: skip
    try:
        for call in (
            lambda: os.stat(tmp_path / "mnt/repositories/x"),
            lambda: (tmp_path / "mnt/repositories/x").mkdir(),
        ):
            with pytest.raises(OSError) as failed:
                call()  # a hang fails the whole run (pytest's and CI's own limits)
            assert failed.value.errno == errno.EIO
        log = mount.log_text()
        assert "did not answer within 2 s" in log
        assert "Traceback" not in log
    finally:
        mount.stop()


# a local disk that fills up or turns read-only ----------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a store on a disk of its own that a test can fill or freeze."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _remount(disk: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(disk)], check=True)


def test_a_full_disk_gives_enospc_and_the_upload_resumes(small_disk: Path, tmp_path: Path) -> None:
    mount = Mount(small_disk, tmp_path / "mnt", tmp_path / "layerfs.log").start()
    uploads = tmp_path / "mnt/repositories/app/_uploads"
    data = os.urandom(6 << 20)  # more than the disk holds
    try:
        uploads.mkdir(parents=True, exist_ok=True)
        with pytest.raises(OSError) as full, open(uploads / "big", "wb") as f:
            f.write(data)
        assert full.value.errno == errno.ENOSPC
        kept = (uploads / "big").stat().st_size
        assert 0 < kept < len(data)
        _remount(small_disk, "size=16m")  # room again: the upload continues where it is
        with open(uploads / "big", "ab") as f:
            f.write(data[kept:])
        assert (uploads / "big").read_bytes() == data
        log = mount.log_text()
        assert "No space left on device on the store's disk" in log
        assert "failed unexpectedly" not in log and "Traceback" not in log
    finally:
        mount.stop()


def test_a_read_only_disk_gives_erofs(small_disk: Path, tmp_path: Path) -> None:
    import hashlib

    mount = Mount(small_disk, tmp_path / "mnt", tmp_path / "layerfs.log").start()
    uploads = tmp_path / "mnt/repositories/app/_uploads"
    try:
        uploads.mkdir(parents=True, exist_ok=True)
        (uploads / "x").write_bytes(b"hello")
        _remount(small_disk, "ro")
        digest = "sha256:" + hashlib.sha256(b"hello").hexdigest()
        with pytest.raises(OSError) as renamed:
            os.rename(uploads / "x", uploads / digest)
        assert renamed.value.errno == errno.EROFS
        with pytest.raises(OSError) as created:
            (uploads / "y").write_bytes(b"more")
        assert created.value.errno == errno.EROFS
        log = mount.log_text()
        assert "the store is read-only" in log
        assert "failed unexpectedly" not in log and "Traceback" not in log
        _remount(small_disk, "rw")
        os.rename(uploads / "x", uploads / digest)  # nothing was lost: it finishes now
        assert not (uploads / "x").exists()
    finally:
        mount.stop()
