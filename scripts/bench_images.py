"""The images section of scripts/bench: ``layerfs import`` against ``skopeo copy`` into
docker-registry, and ``layerfs fsck`` against sha256 on one core."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import zlib
from pathlib import Path

from tests.registry import DockerRegistry

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYERFS = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "layerfs")


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def make_layout(layout: Path, layers: int, layer_mib: int) -> int:
    """An OCI layout of ``layers`` gzip layers (stored deflate blocks over random bytes,
    so no tool spends time compressing); returns its size in bytes."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    descriptors = []
    for _ in range(layers):
        packer = zlib.compressobj(0, zlib.DEFLATED, 31)
        data = packer.compress(os.urandom(layer_mib << 20)) + packer.flush()
        descriptors.append({"mediaType": LAYER_TYPE, **_blob(layout, data)})
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                         "diff_ids": [d["digest"] for d in descriptors]}}).encode()  # fmt: skip
    config_type = "application/vnd.oci.image.config.v1+json"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": config_type, **_blob(layout, config)},
        "layers": descriptors,
    }).encode()  # fmt: skip
    top = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **_blob(layout, manifest),
           "annotations": {"org.opencontainers.image.ref.name": "v1"}}  # fmt: skip
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    subprocess.run(["sync"], check=True)
    return sum(d["size"] for d in descriptors)


def _timed(args: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one command."""
    start = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args[:2]} failed")
    return wall, usage.ru_utime + usage.ru_stime


def sha256_one_core(size: int) -> float:
    """Bytes per second of hashlib's sha256 on one core, over data in memory."""
    block = os.urandom(64 << 20)
    hasher = hashlib.sha256()
    start = time.perf_counter()
    for _ in range(max(1, size // len(block))):
        hasher.update(block)
    return max(1, size // len(block)) * len(block) / (time.perf_counter() - start)


def add_blobs(store: Path, mib: int) -> int:
    """Put ``mib`` MiB more of random blobs (64 MiB each) straight into a store's
    ``blobs/``, so that fsck's fixed start-up cost weighs as little as in a real store."""
    added = 0
    while added < mib << 20:
        data = os.urandom(64 << 20)
        digest = hashlib.sha256(data).hexdigest()
        blob = store / "docker/registry/v2/blobs/sha256" / digest[:2] / digest
        blob.mkdir(parents=True)
        (blob / "data").write_bytes(data)
        added += len(data)
    return added


def bench_images(
    work: Path, layers: int = 8, layer_mib: int = 64, fsck_mib: int = 2048
) -> dict[str, float]:
    layout = work / "layout"
    size = make_layout(layout, layers, layer_mib)
    results: dict[str, float] = {"bytes": size}
    (work / "skopeo-store").mkdir()
    registry = DockerRegistry(work, {"filesystem": {"rootdirectory": str(work / "skopeo-store")}})
    registry.start()
    try:
        results["skopeo"], _ = _timed([
            "skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false",
            f"oci:{layout}:v1", f"docker://{registry.host}/bench/app:v1",
        ])  # fmt: skip
    finally:
        registry.stop()
    # The registry never syncs: its 'size' bytes are still being written back. Flush
    # them (untimed) so the import, which makes every blob durable, does not pay for them.
    subprocess.run(["sync"], check=True)
    store = work / "import-store"
    results["import"], _ = _timed(
        [LAYERFS, "import", f"oci:{layout}:v1", str(store), "bench/app:v1"]
    )
    results["fsck_bytes"] = size + add_blobs(store, max(0, fsck_mib - (size >> 20)))
    subprocess.run(["cat", *map(str, store.rglob("data"))], stdout=subprocess.DEVNULL, check=True)
    results["fsck"], results["fsck_cpu"] = _timed([LAYERFS, "fsck", str(store)])
    results["sha256"] = sha256_one_core(results["fsck_bytes"])
    return results


def print_images(r: dict[str, float], layers: int, layer_mib: int) -> None:
    mib = r["fsck_bytes"] / (1 << 20)
    cores = r["fsck_cpu"] / r["fsck"]
    per_core = r["fsck_bytes"] / r["fsck"] / cores
    print()
    print(f"{'images, ' + f'{layers} layers of {layer_mib} MiB':45} {'layerfs':>9} {'other':>9} "
          f"{'ratio':>8}  goal")  # fmt: skip
    print(f"{'import OCI layout vs skopeo copy to registry':45} {r['import']:8.2f}s "
          f"{r['skopeo']:8.2f}s {r['skopeo'] / r['import']:7.2f}x  >= 2x")  # fmt: skip
    print(f"{'fsck per core used vs sha256 on one core':45} {per_core / 2**20:7.0f}M/s "
          f"{r['sha256'] / 2**20:7.0f}M/s {per_core / r['sha256']:7.2f}x  >= 0.8x")  # fmt: skip
    cpu = f"{r['fsck_cpu']:.2f} s CPU in {r['fsck']:.2f} s, start-up included"
    print(f"\nfsck: {mib / r['fsck']:.0f} MiB/s over {mib:.0f} MiB (in the page cache) using "
          f"{cores:.2f} cores ({cpu})")  # fmt: skip
