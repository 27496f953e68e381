"""``layerfs inspect`` against what docker-registry serves of the same store, read by
``skopeo inspect`` (the manifest's bytes, the config, the layers and their sizes)."""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
from pathlib import Path

from ..conftest import Store
from ..images import image_of, random_tar, write_oci_index_layout
from ..mounts import LAYERFS, Mount
from ..registry import DockerRegistry, skopeo
from ..registry_states import _push, manifest_digest, schema1_able_registry, with_history

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def inspect(store: Store, *args: str, at: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LAYERFS, "inspect", str(at or store.spec), *args],
        capture_output=True, text=True, env={**os.environ, **store.env}, timeout=120,
    )  # fmt: skip


def inspect_ok(store: Store, *args: str, at: Path | None = None) -> str:
    result = inspect(store, *args, at=at)
    assert result.returncode == 0, result.stderr
    return result.stdout


def skopeo_inspect(registry: DockerRegistry, reference: str, *flags: str) -> str:
    return skopeo("inspect", "--tls-verify=false", *flags,
                  f"docker://{registry.host}/{reference}").stdout  # fmt: skip


def build(store: Store, tmp_path: Path) -> DockerRegistry:
    """A multi-arch index, a tag pushed twice (moved), a schema1 image."""
    registry = schema1_able_registry(tmp_path, store.registry_storage()).start()
    rng = random.Random(3)
    arches = {a: image_of([random_tar(rng)], seed=20 + i, arch=a)
              for i, a in enumerate(["amd64", "arm64"])}  # fmt: skip
    write_oci_index_layout(arches, tmp_path / "multi", "t")
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{tmp_path / 'multi'}:t",
           f"docker://{registry.host}/app/multi:latest")  # fmt: skip
    for seed in (30, 31):
        image = image_of([random_tar(rng), random_tar(rng)], seed=seed)
        _push(tmp_path, registry, image, "app/one:v1")
    _push(tmp_path, registry, with_history(image_of([random_tar(rng)], seed=40)),
          "app/old:v1", "--format", "v2s1")  # fmt: skip
    return registry


async def test_inspect_shows_what_the_registry_serves(store: Store, tmp_path: Path) -> None:
    registry = build(store, tmp_path)
    try:
        for reference in ["app/multi:latest", "app/one:v1", "app/old:v1"]:
            raw = skopeo_inspect(registry, reference, "--raw")
            ours = inspect_ok(store, reference, "--raw")
            if reference == "app/old:v1":  # schema1: stored unsigned, served signed
                signed = json.loads(raw)
                del signed["signatures"]
                assert json.loads(ours) == signed
            else:
                assert ours == raw
            found = json.loads(inspect_ok(store, reference, "--json"))
            repo, tag = reference.split(":")
            assert found["digest"] == manifest_digest(registry, repo, tag)
            assert found["mediaType"] == json.loads(raw).get("mediaType", found["mediaType"])
            # by digest, the same
            by_digest = json.loads(inspect_ok(store, f"{repo}@{found['digest']}", "--json"))
            assert {k: v for k, v in by_digest.items() if k not in ("tag", "history")} == {
                k: v for k, v in found.items() if k not in ("tag", "history")
            }

        # an index: its platforms, and --config picks this machine's
        index = json.loads(inspect_ok(store, "app/multi:latest", "--json"))
        raw_index = json.loads(skopeo_inspect(registry, "app/multi:latest", "--raw"))
        assert index["platforms"] == [
            {**m["platform"], "digest": m["digest"]} for m in raw_index["manifests"]
        ]
        config = inspect_ok(store, "app/multi:latest", "--config")
        assert json.loads(config) == json.loads(skopeo_inspect(registry, "app/multi:latest",
                                                               "--config", "--raw"))  # fmt: skip
        assert json.loads(config)["architecture"] == ARCH
        total = 0
        for child in index["manifests"]:
            layers = {layer["digest"]: layer["size"] for layer in child["layers"]}
            raw_child = json.loads(
                skopeo_inspect(registry, f"app/multi@{child['digest']}", "--raw")
            )
            assert layers == {d["digest"]: d["size"] for d in raw_child["layers"]}
            total += child["totalSize"]
        assert index["totalSize"] == total + index["size"]  # the children share nothing

        # an image: layers and sizes as skopeo reads them, the moved tag's history
        one = json.loads(inspect_ok(store, "app/one:v1", "--json"))
        data = json.loads(skopeo_inspect(registry, "app/one:v1"))
        raw_one = json.loads(skopeo_inspect(registry, "app/one:v1", "--raw"))
        assert [layer["digest"] for layer in one["layers"]] == data["Layers"]
        sizes = [(d["digest"], d["size"]) for d in raw_one["layers"]]
        assert [(layer["digest"], layer["size"]) for layer in one["layers"]] == sizes
        layer_bytes = sum(size for _, size in sizes)
        assert one["totalSize"] == one["size"] + one["config"]["size"] + layer_bytes
        assert [e["current"] for e in one["history"]] == [False, True]
        assert one["history"][-1]["digest"] == one["digest"]
        text = inspect_ok(store, "app/one:v1")
        assert f"  digest      {one['digest']}" in text and "history of v1" in text

        # schema1: layers without a config
        old = json.loads(inspect_ok(store, "app/old:v1", "--json"))
        assert "config" not in old and len(old["layers"]) == 1
        result = inspect(store, "app/old:v1", "--config")
        assert result.returncode == 1 and "has no config" in result.stderr
    finally:
        registry.stop()


async def test_inspect_through_a_mount_and_bad_references(
    store: Store, mount: Mount, tmp_path: Path
) -> None:
    registry = build(store, tmp_path)
    registry.stop()
    assert inspect_ok(store, "app/multi:latest", "--json", at=mount.mountpoint) == inspect_ok(
        store, "app/multi:latest", "--json"
    )
    for reference, message in [
        ("app/one:nosuch", "tag unknown: nosuch"),
        ("no/such:v1", "tag unknown: v1"),
        ("app/one@sha256:" + "0" * 64, "manifest unknown"),
        ("app/one@sha256:zz", "invalid"),
    ]:
        result = inspect(store, reference)
        assert result.returncode == 1, (reference, result.stderr)
        assert message in result.stderr.lower(), (reference, result.stderr)
    result = inspect(store, "app/one:v1", "--raw", "--config")
    assert result.returncode == 2
