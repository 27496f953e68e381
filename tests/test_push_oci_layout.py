"""scripts/push-oci-layout imports an OCI layout through the mount; docker-registry
serves the store and skopeo pulls the image."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from .images import make_image, write_oci_layout
from .mounts import Mount
from .registry import DockerRegistry, skopeo, skopeo_pull

SCRIPT = Path(__file__).resolve().parent.parent / "scripts/push-oci-layout"


@pytest.mark.registry
def test_push_oci_layout_then_pull(
    mount: Mount, store_registry: DockerRegistry, tmp_path: Path
) -> None:
    image = make_image(60, layers=3)
    layout = write_oci_layout(image, tmp_path / "layout", "v1")
    run = [str(SCRIPT), str(layout), str(mount.mountpoint), "imported/app", "v1"]
    out = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert image.manifest_digest in out
    # a second run finds everything in place and changes nothing
    subprocess.run(run, capture_output=True, text=True, check=True)

    pulled = tmp_path / "pulled"
    skopeo_pull(store_registry, "imported/app:v1", pulled)
    assert json.loads((pulled / "manifest.json").read_bytes()) == json.loads(image.manifest)
    for blob in [*image.layers, image.config]:
        assert (pulled / hashlib.sha256(blob).hexdigest()).read_bytes() == blob
    inspected = json.loads(
        skopeo(
            "inspect", "--tls-verify=false", f"docker://{store_registry.host}/imported/app:v1"
        ).stdout
    )
    assert inspected["Digest"] == image.manifest_digest
