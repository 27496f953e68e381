"""scripts/push-oci-layout imports an OCI layout through the mount; docker-registry
serves the store and skopeo pulls the image."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from ..conftest import Store
from ..images import (
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    make_image,
    write_oci_index_layout,
    write_oci_layout,
)
from ..mounts import LAYERFS, Mount
from ..registry import DockerRegistry, skopeo, skopeo_pull
from ..registry_states import ACCEPT_ALL

SCRIPT = Path(__file__).resolve().parents[2] / "scripts/push-oci-layout"


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


# multi-arch layouts -------------------------------------------------------------------
def push(layout: Path, mount: Mount, repo: str, tag: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), str(layout), str(mount.mountpoint), repo, tag],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def layout_blobs(layout: Path) -> dict[str, bytes]:
    return {f"sha256:{p.name}": p.read_bytes() for p in (layout / "blobs/sha256").iterdir()}


def top_digest(layout: Path, tag: str) -> str:
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    named = [e for e in entries if e.get("annotations", {}).get(REF_NAME) == tag]
    return (named or entries)[0]["digest"]


REF_NAME = "org.opencontainers.image.ref.name"


def nested_layout(directory: Path, tag: str) -> str:
    """An index whose children are an image and another index (of two images)."""
    inner_images = {a: make_image(70 + i, layers=2) for i, a in enumerate(["amd64", "arm64"])}
    inner = write_oci_index_layout(inner_images, directory, "inner")
    extra = make_image(80, layers=1)
    blobs = directory / "blobs/sha256"
    for digest, data in extra.blobs.items():
        (blobs / digest[7:]).write_bytes(data)
    outer = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {**descriptor(OCI_INDEX, inner)},
            {**descriptor(OCI_MANIFEST, extra.manifest),
             "platform": {"architecture": "s390x", "os": "linux"}},
        ],
    }).encode()  # fmt: skip
    (blobs / hashlib.sha256(outer).hexdigest()).write_bytes(outer)
    top = {"schemaVersion": 2, "manifests": [
        {**descriptor(OCI_INDEX, outer), "annotations": {REF_NAME: tag}}]}  # fmt: skip
    (directory / "index.json").write_text(json.dumps(top))
    return "sha256:" + hashlib.sha256(outer).hexdigest()


def assert_pulls_whole(
    registry: DockerRegistry, reference: str, layout: Path, tag: str, tmp_path: Path
) -> None:
    """The registry serves the layout's image byte for byte, every manifest and blob
    below its top, and ``skopeo copy --all`` pulls it (checking every digest)."""
    digest = top_digest(layout, tag)
    blobs = layout_blobs(layout)
    repo = reference.split(":")[0]
    for wanted in reachable(blobs, digest):
        kind = "manifests" if is_manifest(blobs[wanted]) else "blobs"
        headers = {"Accept": ACCEPT_ALL} if kind == "manifests" else {}
        resp = registry.request("GET", f"/v2/{repo}/{kind}/{wanted}", headers=headers)
        assert resp.status == 200 and resp.body == blobs[wanted], (wanted, resp.status)
    served = registry.get_manifest(repo, tag, ACCEPT_ALL)
    assert served.headers["Docker-Content-Digest"] == digest
    # skopeo 1.9 copies no index of indexes: it pulls the indexes and images below one
    for n, pullable in enumerate(skopeo_pullable(blobs, digest)):
        source = reference if pullable == digest else f"{repo}@{pullable}"
        name = f"{reference}-{n}".replace("/", "_").replace(":", "_")
        skopeo(
            "copy", "--all", "--src-tls-verify=false", f"docker://{registry.host}/{source}",
            f"oci:{tmp_path / f'pulled-{name}'}:t",
        )  # fmt: skip


def skopeo_pullable(blobs: dict[str, bytes], digest: str) -> list[str]:
    """``digest`` if it is an image or an index of images, else what is below it."""
    children = [c["digest"] for c in json.loads(blobs[digest]).get("manifests", [])]
    if not any(json.loads(blobs[c]).get("manifests") for c in children):
        return [digest]
    return [p for c in children for p in skopeo_pullable(blobs, c)]


def is_manifest(data: bytes) -> bool:
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return isinstance(doc, dict) and ("layers" in doc or "manifests" in doc)


def reachable(blobs: dict[str, bytes], digest: str) -> set[str]:
    doc = json.loads(blobs[digest])
    found = {digest}
    for d in ([doc["config"]] if "config" in doc else []) + doc.get("layers", []):
        found.add(d["digest"])
    for child in doc.get("manifests", []):
        found |= reachable(blobs, child["digest"])
    return found


@pytest.mark.registry
def test_an_index_and_a_nested_index(
    mount: Mount, store_registry: DockerRegistry, tmp_path: Path
) -> None:
    arches = {a: make_image(90 + i, layers=2) for i, a in enumerate(["amd64", "arm64"])}
    write_oci_index_layout(arches, tmp_path / "multi", "v1")
    nested_layout(tmp_path / "nested", "v2")
    for layout, tag in [(tmp_path / "multi", "v1"), (tmp_path / "nested", "v2")]:
        result = push(layout, mount, "multi/app", tag)
        assert result.returncode == 0, result.stderr
        assert top_digest(layout, tag) in result.stdout
        assert push(layout, mount, "multi/app", tag).returncode == 0  # again: nothing to do
        assert_pulls_whole(store_registry, f"multi/app:{tag}", layout, tag, tmp_path)


@pytest.mark.registry
def test_layouts_that_buildah_umoci_skopeo_and_layerfs_export_write(
    mount: Mount, store: Store, store_registry: DockerRegistry, tmp_path: Path
) -> None:
    # buildah: a manifest list of an amd64 and an arm64 image, pushed --all as OCI
    storage = ["--root", str(tmp_path / "bh-root"), "--runroot", str(tmp_path / "bh-run"),
               "--storage-driver", "vfs"]  # fmt: skip
    (tmp_path / "hello").write_text("hello\n")
    buildah = ["buildah", *storage]
    for arch in ["amd64", "arm64"]:
        container = run([*buildah, "from", "--arch", arch, "scratch"]).strip()
        run([*buildah, "copy", container, str(tmp_path / "hello"), f"/hello-{arch}"])
        run([*buildah, "config", "--arch", arch, "--os", "linux", container])
        run([*buildah, "commit", "-q", container, f"img-{arch}"])
    run([*buildah, "manifest", "create", "list"])
    for arch in ["amd64", "arm64"]:
        run([*buildah, "manifest", "add", "list", f"containers-storage:localhost/img-{arch}"])
    by_buildah = tmp_path / "by-buildah"
    run([*buildah, "manifest", "push", "--all", "--format", "oci", "list", f"oci:{by_buildah}:v1"])
    # umoci: a single image with one layer
    by_umoci = tmp_path / "by-umoci"
    run(["umoci", "init", "--layout", str(by_umoci)])
    run(["umoci", "new", "--image", f"{by_umoci}:v1"])
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--rootless", "--image", f"{by_umoci}:v1", str(bundle)])
    (bundle / "rootfs/greeting").write_text("hi\n")
    run(["umoci", "repack", "--image", f"{by_umoci}:v1", str(bundle)])
    cases = [(by_buildah, "buildah/app"), (by_umoci, "umoci/app")]
    for layout, repo in cases:
        result = push(layout, mount, repo, "v1")
        assert result.returncode == 0, result.stderr
        assert_pulls_whole(store_registry, f"{repo}:v1", layout, "v1", tmp_path)
    # skopeo: the buildah image copied --all out of the registry; layerfs export of it
    by_skopeo = tmp_path / "by-skopeo"
    skopeo("copy", "--all", "--src-tls-verify=false",
           f"docker://{store_registry.host}/buildah/app:v1", f"oci:{by_skopeo}:v1")  # fmt: skip
    by_export = tmp_path / "by-export"
    env = {**os.environ, **store.env}
    subprocess.run([LAYERFS, "export", store.spec, "buildah/app:v1", f"oci:{by_export}:v1"],
                   check=True, capture_output=True, env=env, timeout=300)  # fmt: skip
    for layout, repo in [(by_skopeo, "skopeo/app"), (by_export, "export/app")]:
        result = push(layout, mount, repo, "v1")
        assert result.returncode == 0, result.stderr
        assert_pulls_whole(store_registry, f"{repo}:v1", layout, "v1", tmp_path)


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    return result.stdout


def test_a_refusal_names_the_file_and_the_reason(mount: Mount, tmp_path: Path) -> None:
    image = make_image(95, layers=2)
    layout = write_oci_layout(image, tmp_path / "broken", "v1")
    missing = hashlib.sha256(image.layers[1]).hexdigest()
    (layout / "blobs/sha256" / missing).unlink()  # the manifest names a blob not there
    result = push(layout, mount, "broken/app", "v1")
    assert result.returncode == 1
    revision = f"repositories/broken/app/_manifests/revisions/sha256/{image.manifest_digest[7:]}"
    assert f"refused manifest {image.manifest_digest} ({mount.mountpoint}/{revision}/link)" in (
        result.stderr
    )
    assert f"EINVAL: manifest references unknown blobs: sha256:{missing}" in result.stderr
    assert "I/O error" not in result.stderr
    # the tag names nothing the layout holds
    result = push(layout, mount, "broken/app", "v9")
    assert result.returncode == 1 and "names no manifest v9 (its tags: v1)" in result.stderr
    # nothing was left half-made: no revision, no tag, no upload
    repo = mount.mountpoint / "repositories/broken/app"
    assert not (repo / "_manifests/revisions/sha256").exists()
    assert os.listdir(repo / "_manifests/tags") == []
    assert os.listdir(repo / "_uploads") == []


def test_a_symbolic_link_in_the_layout_is_refused(mount: Mount, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"outside the layout")
    image = make_image(96, layers=1)
    layout = write_oci_layout(image, tmp_path / "linked", "v1")
    named = layout / "blobs/sha256" / hashlib.sha256(secret.read_bytes()).hexdigest()
    named.symlink_to(secret)  # named as the file it points at: a mv would accept it
    result = push(layout, mount, "linked/app", "v1")
    assert result.returncode == 1
    assert f"{named}: a symbolic link, not followed" in result.stderr
    blobs = mount.mountpoint / "blobs/sha256" / named.name[:2] / named.name
    assert not blobs.exists()  # nothing of the file outside reached the store
