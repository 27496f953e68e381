"""A mount the system refuses says why in one line, in the foreground and in the
background, with no traceback: a user who cannot open /dev/fuse, and one who may not
mount at all. Both are made as root by dropping capabilities (setpriv), so the test
needs no other user."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..mounts import LAYERFS, is_mounted

DEVICE = "/dev/fuse"


@pytest.fixture
def unopenable_device() -> Iterator[None]:
    """/dev/fuse with no permission bits: root without CAP_DAC_OVERRIDE cannot open it
    (mounts already running keep their descriptors)."""
    mode = os.stat(DEVICE).st_mode & 0o7777
    os.chmod(DEVICE, 0)
    try:
        yield
    finally:
        os.chmod(DEVICE, mode)


def mount_without(caps: str, tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    args = ["setpriv", f"--bounding-set={caps}", LAYERFS, "mount", *options]
    args += ["--log-file", str(tmp_path / "log")] if "-f" not in options else []
    args += [str(tmp_path / "store"), str(tmp_path / "mnt")]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("options", [("-f",), ()], ids=["foreground", "background"])
def test_no_access_to_dev_fuse(
    tmp_path: Path, unopenable_device: None, options: tuple[str, ...]
) -> None:
    result = mount_without("-dac_override,-dac_read_search", tmp_path, *options)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and DEVICE in lines[0] and "mount as root" in lines[0], lines
    assert not is_mounted(tmp_path / "mnt")


@pytest.mark.parametrize("options", [("-f",), ()], ids=["foreground", "background"])
def test_not_allowed_to_mount(tmp_path: Path, options: tuple[str, ...]) -> None:
    result = mount_without("-sys_admin", tmp_path, *options)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: cannot mount {tmp_path / 'mnt'}: fuse_session_mount failed"]
    assert not is_mounted(tmp_path / "mnt")
