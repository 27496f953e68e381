"""``layerfs mount --config`` with a registry's own config.yml, and docker-registry's
s3 driver and layerfs sharing one SeaweedFS bucket."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from ..conftest import S3_BUCKET
from ..images import make_image, write_oci_layout
from ..mount.test_mount import REPO, errno_of, push_image_through_mount, sh
from ..mounts import LAYERFS, Mount
from ..registry import DockerRegistry, skopeo_pull, skopeo_push
from ..seaweed import SeaweedFS


def test_config_filesystem_readonly(store_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {store_dir}\n"
        "  maintenance:\n    readonly:\n      enabled: true\n"
    )
    (store_dir / "docker/registry/v2/repositories/r/_layers").mkdir(parents=True)
    mount = Mount("", tmp_path / "mnt", tmp_path / "log").with_config(config).start()
    try:
        assert os.listdir(mount.mountpoint / "repositories") == ["r"]
        assert errno_of(os.mkdir, mount.mountpoint / "repositories/new") == errno.EROFS
    finally:
        mount.stop()


@pytest.mark.registry
def test_registry_s3_and_layerfs_share_a_bucket(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    root = f"/shared-{tmp_path.name}"
    registry = DockerRegistry(tmp_path, seaweedfs.registry_storage(S3_BUCKET, root)).start()
    config = tmp_path / "config.yml"
    config.write_text(json.dumps(registry.config))  # the registry's own file
    mount = Mount("", tmp_path / "mnt", tmp_path / "log").with_config(config).start()
    try:
        # layerfs writes, the registry (s3 driver) serves, skopeo pulls
        repo = mount.mountpoint / REPO
        repo.mkdir(parents=True)
        digest, manifest = push_image_through_mount(repo, tmp_path, 70)
        pulled = tmp_path / "pulled"
        skopeo_pull(registry, "library/hello:v1", pulled)
        assert (pulled / "manifest.json").read_bytes() == manifest
        # skopeo pushes through the registry, layerfs reads it
        image = make_image(71, layers=2)
        layout = write_oci_layout(image, tmp_path / "layout", "v2")
        skopeo_push(layout, "v2", registry, "pushed/app:v2")
        tag = mount.mountpoint / "repositories/pushed/app/_manifests/tags/v2/current/link"
        pushed = tag.read_text()
        hexpart = pushed.split(":")[1]
        data = (mount.mountpoint / "blobs/sha256" / hexpart[:2] / hexpart / "data").read_bytes()
        assert hashlib.sha256(data).hexdigest() == hexpart
        for layer in json.loads(data)["layers"]:
            h = layer["digest"].split(":")[1]
            blob = (mount.mountpoint / "blobs/sha256" / h[:2] / h / "data").read_bytes()
            assert hashlib.sha256(blob).hexdigest() == h
            link = mount.mountpoint / "repositories/pushed/app/_layers/sha256" / h / "link"
            assert link.read_text() == layer["digest"]
    finally:
        mount.stop()
        registry.stop()


def test_upload_started_on_one_mount_finished_on_another(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    env = seaweedfs.aws_env()
    store = f"s3://{S3_BUCKET}/two-{tmp_path.name}"
    first = Mount(store, tmp_path / "m1", tmp_path / "l1", env=env).start()
    second = Mount(store, tmp_path / "m2", tmp_path / "l2", env=env).start()
    data = os.urandom(12 << 20)
    (tmp_path / "part1").write_bytes(data[: 7 << 20])
    (tmp_path / "part2").write_bytes(data[7 << 20 :])
    try:
        (first.mountpoint / REPO).mkdir(parents=True)
        sh(f"cp {tmp_path}/part1 _uploads/shared", first.mountpoint / REPO)
        repo2 = second.mountpoint / REPO
        assert (repo2 / "_uploads/shared").stat().st_size == 7 << 20
        sh(f"cat {tmp_path}/part2 >> _uploads/shared", repo2)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        sh(f"mv _uploads/shared _uploads/{digest}", repo2)
        link = first.mountpoint / REPO / "_layers/sha256" / digest[7:] / "link"
        assert link.read_text() == digest
    finally:
        second.stop()
        first.stop()


def test_s3_mount_configured_by_its_options_alone(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    """Endpoint, region, a named profile's credentials and the part size from -o, with
    no AWS variables in the environment: the parts the cp leaves pending are 6 MiB."""
    credentials = tmp_path / "credentials"
    credentials.write_text("[layerfs-test]\naws_access_key_id = k\naws_secret_access_key = s\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_CONFIG_FILE": "/nonexistent"}
    options = f"endpoint={seaweedfs.endpoint},region=us-east-1,profile=layerfs-test,part_size=6M"
    root = f"opts-{tmp_path.name}"
    mount = Mount(f"s3://{S3_BUCKET}/{root}", tmp_path / "mnt", tmp_path / "log", "-o", options)
    mount.env = env
    mount.start()
    data = os.urandom(13 << 20)
    (tmp_path / "blob").write_bytes(data)
    try:
        repo = mount.mountpoint / REPO
        repo.mkdir(parents=True)
        sh(f"cp {tmp_path}/blob _uploads/big", repo)
        client = seaweedfs.client()
        pending = client.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=root + "/")["Uploads"]
        assert len(pending) == 1 and pending[0]["Key"].endswith("/data")
        parts = client.list_parts(
            Bucket=S3_BUCKET, Key=pending[0]["Key"], UploadId=pending[0]["UploadId"]
        )["Parts"]
        assert [p["Size"] for p in parts] == [6 << 20, 6 << 20, 1 << 20]
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        sh(f"mv _uploads/big _uploads/{digest}", repo)
        assert (repo / "_layers/sha256" / digest[7:] / "link").read_text() == digest
    finally:
        mount.stop()


@pytest.mark.parametrize(
    "store, options, message",
    [
        ("s3://b/r", "profile=no-such-profile", "no-such-profile"),
        ("s3://b/r", "part_size=1M", "below S3's minimum"),
        ("{tmp}/store", "region=us-east-1", "only for s3:// stores"),
    ],
)
def test_s3_mount_options_refused(tmp_path: Path, store: str, options: str, message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}
    args = [LAYERFS, "mount", "-f", "-o", options, store.format(tmp=tmp_path), str(tmp_path / "m")]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and message in result.stderr
