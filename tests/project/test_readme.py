"""The README's first five minutes, run as written (in a temporary directory, on
free ports): the multi-arch image is built with buildah, pushed through a mount,
inspected, and pulled from docker-registry with skopeo."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from ..registry import free_port

ROOT = Path(__file__).resolve().parents[2]


def five_minutes() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The first five minutes") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_the_first_five_minutes_run_as_written(tmp_path: Path) -> None:
    blocks = five_minutes()
    assert len(blocks) == 2 and "buildah manifest push --all" in blocks[0]
    port = free_port()
    places = {
        "/srv/store": str(tmp_path / "store"),
        "/mnt/reg": str(tmp_path / "mnt"),
        "/tmp/registry.yml": str(tmp_path / "registry.yml"),
        "/tmp/pulled": str(tmp_path / "pulled"),
        "127.0.0.1:5000": f"127.0.0.1:{port}",
    }
    script = "\n".join(blocks)
    for written, here in places.items():
        script = script.replace(written, here)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path}/graph"\nrunroot = "{tmp_path}/run"\n'
    )
    cleanup = (
        f"trap 'kill $(jobs -p) 2>/dev/null; fusermount3 -u {tmp_path / 'mnt'} 2>/dev/null"
        " || true' EXIT\n"
    )
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", cleanup + script],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "library/hello:v1 -> sha256:" in out
    assert "linux/amd64" in out and "linux/arm64" in out  # inspect's platforms
    assert '"architecture": "amd64"' in out or '"architecture": "arm64"' in out
    index = json.loads((tmp_path / "pulled/index.json").read_text())
    pulled = index["manifests"][0]["digest"]
    assert pulled == out.split("library/hello:v1 -> ")[1].split()[0]  # what was pushed
    blob = tmp_path / "pulled/blobs/sha256" / pulled[7:]
    architectures = [
        m["platform"]["architecture"] for m in json.loads(blob.read_text())["manifests"]
    ]
    assert architectures == ["amd64", "arm64"]
