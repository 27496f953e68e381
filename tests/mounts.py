"""A real ``layerfs mount -f`` in a subprocess on a kernel FUSE mount, for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LAYERFS = str(Path(sys.executable).parent / "layerfs")


def run_layerfs(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``layerfs ARGS...`` to its end, its output captured, ``env`` added to ours."""
    return subprocess.run(
        [LAYERFS, *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as info:
        return any(line.split()[4] == target for line in info)


class Mount:
    def __init__(
        self,
        store: str | Path,
        mountpoint: Path,
        log: Path,
        *options: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.store, self.mountpoint, self.log, self.options = store, mountpoint, log, options
        self.env = {**os.environ, **(env or {})}
        self.config: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def with_config(self, config: Path) -> Mount:
        """Mount what a registry's config.yml names instead of ``store``."""
        self.config = config
        return self

    def start(self) -> Mount:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        args = [LAYERFS, "mount", "-f", "--log-level", "debug", "--log-file", str(self.log)]
        stores = ["--config", str(self.config)] if self.config else [str(self.store)]
        args += [*self.options, *stores, str(self.mountpoint)]
        self.process = subprocess.Popen(args, stderr=subprocess.PIPE, env=self.env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"layerfs mount exited: {self.process.stderr.read()!r}")
            try:
                os.getxattr(self.mountpoint, "user.layerfs.pid")
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("layerfs mount did not come up")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """Unmount the way users do, and wait for the daemon."""
        if self.process is None:
            return
        if self.process.poll() is None:
            result = subprocess.run(
                [LAYERFS, "umount", str(self.mountpoint)], capture_output=True, text=True
            )
            if result.returncode != 0:
                self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        if is_mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False)
        self.process = None

    def kill(self) -> None:
        """``kill -9`` the daemon and clear the dead mount, as an operator would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        subprocess.run(
            ["fusermount3", "-u", str(self.mountpoint)], check=False, capture_output=True
        )
        if is_mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=True)
        self.process = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def assert_refused(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """A command that refused: exit ``code``, no traceback, each of ``words`` said."""
    out = result.stdout + result.stderr
    assert result.returncode == code, out
    assert "Traceback" not in out, out
    for word in words:
        assert word in out, (word, out)
    return out
