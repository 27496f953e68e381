"""SeaweedFS stopped in the middle of a cp: the cp fails with EIO within seconds, the
daemon stays up, and once the gateway is back the upload resumes with ``cat >>`` from
its last stored part and finishes with the right digest."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

from ..mounts import Mount, is_mounted
from ..seaweed import SeaweedFS
from .test_mount import REPO, sh


def test_gateway_goes_away_during_cp(tmp_path: Path) -> None:
    gateway = SeaweedFS(tmp_path / "gw").start()
    gateway.create_bucket("away")
    env = gateway.aws_env()
    mount = Mount("s3://away/reg", tmp_path / "mnt", tmp_path / "log", env=env).start()
    source = tmp_path / "source"
    source.write_bytes(os.urandom(80 << 20))
    try:
        repo = mount.mountpoint / REPO
        repo.mkdir(parents=True)
        # a slow writer, so the gateway dies in the middle
        writer = subprocess.Popen(
            [
                "bash",
                "-ec",
                f"for i in $(seq 0 79); do dd if={source} bs=1M skip=$i count=1 "
                "status=none; sleep 0.05; done > _uploads/big",
            ],
            cwd=repo,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the upload is well under way
            big = repo / "_uploads/big"
            if big.exists() and big.stat().st_size >= 12 << 20:
                break
            time.sleep(0.1)
        gateway.stop()
        started = time.monotonic()
        _, errors = writer.communicate(timeout=120)
        failed_after = time.monotonic() - started
        assert writer.returncode != 0
        assert "Input/output error" in errors
        assert failed_after < 60, f"the cp took {failed_after:.0f} s to fail"
        # the daemon is alive and answers what needs no gateway
        assert int(os.getxattr(mount.mountpoint, "user.layerfs.pid")) == mount.pid
        assert mount.process is not None and mount.process.poll() is None
        assert (
            "EIO" in mount.log_text()
            or "Input/output" in mount.log_text()
            or ("BackendUnavailable" in mount.log_text() or "s3:" in mount.log_text())
        )

        gateway.start()
        have = (repo / "_uploads/big").stat().st_size
        assert 0 < have < source.stat().st_size  # what the gateway stored before it went
        with open(repo / "_uploads/big", "rb") as stored:
            assert stored.read() == source.read_bytes()[:have]
        with open(source, "rb") as rest:
            rest.seek(have)
            subprocess.run(["bash", "-c", "cat >> _uploads/big"], cwd=repo, stdin=rest, check=True)
        digest = "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
        sh(f"mv _uploads/big _uploads/{digest}", repo)
        assert (repo / "_layers/sha256" / digest[7:] / "link").read_text() == digest
    finally:
        mount.stop()
        gateway.stop()


TIMEOUT = 5  # -o timeout=: what every wait below must end within, plus MARGIN
MARGIN = 3.0


def timed(call, *args):  # type: ignore[no-untyped-def]
    """(seconds, errno or None) of one call."""
    started = time.monotonic()
    try:
        call(*args)
        code = None
    except OSError as exc:
        code = exc.errno
    return time.monotonic() - started, code


def test_a_stopped_gateway_answers_within_the_timeout(tmp_path: Path) -> None:
    """SIGSTOP the gateway (it accepts connections and never answers): a write, a
    stat and a listing each end in EIO, and the close after the failed write ends,
    within -o timeout= plus a margin; and the daemon unmounts."""
    gateway = SeaweedFS(tmp_path / "gw").start()
    gateway.create_bucket("stopped")
    mount = Mount(
        "s3://stopped/reg", tmp_path / "mnt", tmp_path / "log", "-o", f"timeout={TIMEOUT}",
        env=gateway.aws_env(),
    ).start()  # fmt: skip
    try:
        repo = mount.mountpoint / REPO
        repo.mkdir(parents=True)
        sh("printf hello > _uploads/small", repo)
        fd = os.open(repo / "_uploads/big", os.O_WRONLY | os.O_CREAT)
        os.write(fd, os.urandom(1 << 20))
        assert gateway.process is not None
        os.kill(gateway.process.pid, signal.SIGSTOP)
        try:
            chunk = os.urandom(1 << 20)
            waits = {}

            def write_until_refused() -> None:
                """As cp writes: the rest of a short write again, until an error."""
                for _ in range(200):  # 200 MiB: far more than the queue holds
                    rest = memoryview(chunk)
                    while rest:
                        rest = rest[os.write(fd, rest) :]

            waits["write"] = timed(write_until_refused)
            waits["close"] = timed(os.close, fd)
            waits["stat"] = timed(os.stat, repo / "_uploads/small")
            waits["ls"] = timed(os.listdir, repo / "_layers")
            for what, (seconds, code) in waits.items():
                assert seconds < TIMEOUT + MARGIN, f"{what} took {seconds:.1f} s"
                # the write reported the failure; its close has nothing left to store
                if what != "close":
                    assert code == errno.EIO, f"{what}: {code}"
        finally:
            os.kill(gateway.process.pid, signal.SIGCONT)
        assert int(os.getxattr(mount.mountpoint, "user.layerfs.pid")) == mount.pid
    finally:
        mount.stop()
        gateway.stop()
    assert not is_mounted(mount.mountpoint)
