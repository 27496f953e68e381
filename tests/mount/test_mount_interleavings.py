"""The interleavings of tests/view/test_view_regressions.py as programs make them, on a
kernel FUSE mount: every close returns, the daemon always ends."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerfs.drivers.s3 import DEFAULT_PART

from ..conftest import S3_BUCKET
from ..httpaux import Proxy
from ..mounts import LAYERFS, Mount, is_mounted
from ..seaweed import SeaweedFS
from .test_mount import REPO, sh

WRITER = """
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY)
os.write(fd, b"first")
sys.stdout.write("written\\n"); sys.stdout.flush()
sys.stdin.readline()                      # the other shell removes the upload now
try:
    os.write(fd, b"second")
    print("write: ok")
except OSError as exc:
    print("write:", exc.errno)
try:
    os.close(fd)
    print("close: ok")
except OSError as exc:
    print("close:", exc.errno)
"""


@pytest.fixture
def repo(mount: Mount) -> Path:
    path = mount.mountpoint / REPO
    path.mkdir(parents=True)
    return path


@pytest.mark.parametrize("how", ["rm", "mv over it"])
def test_writing_to_an_upload_removed_from_another_shell(
    mount: Mount, repo: Path, how: str
) -> None:
    target = repo / "_uploads/x"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdin is not None
    assert writer.stdout.readline() == "written\n"
    if how == "rm":
        sh("rm _uploads/x", repo)
    else:
        sh("printf other > _uploads/y && mv _uploads/y _uploads/x", repo)
    writer.stdin.write("\n")
    writer.stdin.flush()
    out, _ = writer.communicate(timeout=20)  # a hang fails here
    assert out.splitlines() == [f"write: {errno.ESTALE}", f"close: {errno.ESTALE}"]
    assert os.listdir(repo / "_uploads") == ([] if how == "rm" else ["x"])
    mount.stop()  # unmounts: nothing is busy
    assert not is_mounted(mount.mountpoint)


@pytest.mark.parametrize("store", ["filesystem"], indirect=True)  # S3: 400 creates, #15's cost
def test_status_of_400_open_uploads(mount: Mount, repo: Path) -> None:
    handles = [os.open(repo / f"_uploads/upload-number-{n:04}", os.O_CREAT | os.O_WRONLY)
               for n in range(400)]  # fmt: skip
    try:
        result = subprocess.run(
            [LAYERFS, "status", "--json", str(mount.mountpoint)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        names = sorted(u["name"] for u in json.loads(result.stdout))
        assert names == [f"upload-number-{n:04}" for n in range(400)]
    finally:
        for fd in handles:
            os.close(fd)


def test_reading_a_growing_upload_on_s3_copies_nothing(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """A cat during a cp: each read once completed the multipart upload (a server-side
    copy of the whole object) and the next write copied it back as a part."""
    proxy = Proxy(seaweedfs.endpoint.removeprefix("http://"))
    env = {**seaweedfs.aws_env(), "AWS_ENDPOINT_URL": f"http://{proxy.host}"}
    mount = Mount(f"s3://{S3_BUCKET}/grow-{tmp_path.name}", tmp_path / "mnt",
                  tmp_path / "layerfs.log", env=env).start()  # fmt: skip
    try:
        repo = mount.mountpoint / REPO
        repo.mkdir(parents=True)
        part = os.urandom(6 << 20)
        path = repo / "_uploads/growing"
        with open(path, "wb", buffering=0) as writer:
            writer.write(part)
            writer.write(part)  # a whole part sent, the writer still open
            before = len(proxy.requests)
            with open(path, "rb") as reader:
                for _ in range(20):
                    reader.seek(0)
                    reader.read(1 << 20)
            during = proxy.requests[before:]
            writer.write(b"tail")
        completions = [r for r in during if r[0] == "POST" and "uploadId=" in r[1]]
        assert completions == []  # and so no part copied back for the next write
        assert path.read_bytes() == part + part + b"tail"
        part_puts = [r for r in proxy.requests if r[0] == "PUT" and "partNumber=" in r[1]]
        assert len(part_puts) == -(-(len(part) * 2 + 4) // DEFAULT_PART)  # each part once
    finally:
        mount.stop()
        proxy.stop()


# the daemon ends ---------------------------------------------------------------------------
def test_sigterm_ends_the_daemon_though_a_request_never_returns(
    silent_endpoint: str, tmp_path: Path
) -> None:
    env = {"AWS_ACCESS_KEY_ID": "any", "AWS_SECRET_ACCESS_KEY": "any", "AWS_REGION": "us-east-1"}
    mount = Mount(
        "s3://bucket/root",
        tmp_path / "mnt",
        tmp_path / "layerfs.log",
        "-o",
        f"endpoint={silent_endpoint}",
        env=env,
    )
    mount.start()
    try:
        stuck = subprocess.Popen(["stat", str(tmp_path / "mnt/repositories/x")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(1)
        assert stuck.poll() is None  # the request waits for the store
        started = time.monotonic()
        mount.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        mount.process.wait(timeout=40)  # type: ignore[union-attr]
        assert time.monotonic() - started < 30
        assert stuck.wait(timeout=20) != 0
        assert "cancelling them" in mount.log_text()
    finally:
        if mount.process is not None and mount.process.poll() is None:
            mount.process.kill()
        subprocess.run(["fusermount3", "-u", "-z", str(tmp_path / "mnt")], capture_output=True)
        mount.process = None


def test_odd_names_and_special_files_through_the_kernel(mount: Mount, repo: Path) -> None:
    uploads = repo / "_uploads"

    def code(call, *args) -> int:  # type: ignore[no-untyped-def]
        with pytest.raises(OSError) as info:
            call(*args)
        return info.value.errno

    assert code(os.stat, uploads / ("n" * 256)) == errno.ENAMETOOLONG
    assert code(os.stat, uploads / "new\nline") == errno.ENOENT
    assert code(os.stat, os.fsencode(str(uploads)) + b"/\xff\xfe") == errno.ENOENT
    assert code(os.open, uploads / ("n" * 256), os.O_CREAT | os.O_WRONLY) == errno.ENAMETOOLONG
    assert code(os.open, uploads / "new\nline", os.O_CREAT | os.O_WRONLY) == errno.EINVAL
    assert code(os.symlink, "/etc/shadow", uploads / "s") == errno.EPERM
    assert code(os.mkfifo, uploads / "f") == errno.EPERM
    assert code(os.mkdir, repo / "_manifests/foo") == errno.EPERM
    (uploads / "x").write_bytes(b"x")
    assert code(os.link, uploads / "x", uploads / "h") == errno.EPERM
