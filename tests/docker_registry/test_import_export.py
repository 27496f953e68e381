"""import and export: OCI layouts, docker-archive tarballs and docker-registry over
HTTP (plain and with token auth), on disk and on S3 stores; a blob cut in the
middle is retried, Ctrl-C leaves no half-finished blob and the next run continues,
a blob two images share is fetched once, and round trips keep the manifest digest."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from layerfs.storage import Digest, Registry, paths

from ..conftest import Store
from ..httpaux import Proxy, TokenServer
from ..images import (
    image_of,
    make_image,
    random_tar,
    sha256,
    uploads_named,
    write_oci_index_layout,
    write_oci_layout,
)
from ..mounts import LAYERFS, run_layerfs
from ..registry import DockerRegistry, skopeo, skopeo_push

layerfs = run_layerfs


def inspect_digest(location: str) -> str:
    return json.loads(skopeo("inspect", "--tls-verify=false", location).stdout)["Digest"]


def raw_manifest(location: str) -> bytes:
    return skopeo("inspect", "--raw", "--tls-verify=false", location).stdout.encode()


async def test_oci_round_trip(store: Store, tmp_path: Path) -> None:
    image = make_image(seed=21, layers=3)
    write_oci_layout(image, tmp_path / "in", "v1")
    result = layerfs("import", f"oci:{tmp_path / 'in'}:v1", store.spec, "app/x:v1", env=store.env)
    assert result.returncode == 0, result.stderr
    assert f"app/x:v1: digest: {image.manifest_digest}" in result.stdout
    assert result.stderr.count(": Complete") == 4  # 3 layers and the config
    exported = layerfs("export", store.spec, "app/x:v1", f"oci:{tmp_path / 'out'}", env=store.env)
    assert exported.returncode == 0, exported.stderr
    assert inspect_digest(f"oci:{tmp_path / 'out'}:v1") == image.manifest_digest
    assert layerfs("fsck", store.spec, env=store.env).returncode == 0
    again = layerfs("import", f"oci:{tmp_path / 'in'}:v1", store.spec, "app/y:v2", env=store.env)
    assert again.returncode == 0 and again.stderr.count(": Already exists") == 4


async def test_registry_import_retries_a_cut_blob(
    docker_registry: DockerRegistry, store_dir: Path, tmp_path: Path
) -> None:
    big = random.Random(3).randbytes(3 << 20)
    image = image_of([big, random_tar(random.Random(4))], seed=9)
    skopeo_push(write_oci_layout(image, tmp_path / "in", "v1"), "v1", docker_registry, "src/app:v1")
    pushed = docker_registry.get_manifest(
        "src/app", "v1", "application/vnd.oci.image.manifest.v1+json"
    )
    layer = json.loads(pushed.body)["layers"][0]["digest"]  # as stored (skopeo gzips)
    proxy = Proxy(docker_registry.host, cut=(layer, 1 << 20))
    try:
        dest = tmp_path / "dest"
        result = layerfs(
            "import",
            "--retries",
            "3",
            f"docker://{proxy.host}/src/app:v1",
            str(dest),
            "copy/app:v1",
        )
        assert result.returncode == 0, result.stderr
        assert f"{layer.split(':')[1][:12]}: Retrying" in result.stderr
        ranges = proxy.blob_gets(layer)
        assert ranges[0] == "" and len(ranges) == 2
        assert (
            int(ranges[1].removeprefix("bytes=").rstrip("-")) >= 1 << 20
        )  # resumed, not restarted
    finally:
        proxy.stop()
    top = Digest.parse(pushed.headers["Docker-Content-Digest"])
    assert await resolve_tag(dest, "copy/app", "v1") == top
    # the round trip: out to a registry again, same manifest digest
    exported = layerfs(
        "export", str(dest), "copy/app:v1", f"docker://{docker_registry.host}/back/app:v2"
    )
    assert exported.returncode == 0, exported.stderr
    assert inspect_digest(f"docker://{docker_registry.host}/back/app:v2") == str(top)


async def resolve_tag(root: Path, name: str, tag: str) -> Digest:
    from layerfs.drivers import FilesystemDriver

    return await Registry(FilesystemDriver(str(root))).repository(name).tags.resolve(tag)


def _interruptible() -> None:
    """In the child: SIGINT as a terminal gives it. A shell starts a background job
    with SIGINT ignored, and a program keeps that (Python then installs no
    KeyboardInterrupt), so a suite run from such a job would send an interrupt that
    nothing hears."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_ctrl_c_leaves_no_blob_and_the_next_run_continues(
    docker_registry: DockerRegistry, tmp_path: Path
) -> None:
    big = random.Random(5).randbytes(8 << 20)
    image = image_of([big], seed=11)
    skopeo_push(
        write_oci_layout(image, tmp_path / "in", "v1"), "v1", docker_registry, "src/slow:v1"
    )
    pushed = docker_registry.get_manifest(
        "src/slow", "v1", "application/vnd.oci.image.manifest.v1+json"
    )
    layer = json.loads(pushed.body)["layers"][0]["digest"]
    config = Digest.parse(json.loads(pushed.body)["config"]["digest"])
    # the layer's body stops after its first MiB until released: the interrupt lands
    # while the import waits for the rest, however fast or loaded the machine
    proxy = Proxy(docker_registry.host, stall=1 << 20)
    dest = tmp_path / "dest"
    try:
        source = f"docker://{proxy.host}/src/slow:v1"
        process = subprocess.Popen(
            [LAYERFS, "import", source, str(dest), "copy/slow:v1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=_interruptible,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        # the config stored and the layer's upload holding bytes: the interrupt is the
        # layer's alone
        while not (dest / paths.blob_dir(config).lstrip("/")).exists() or not any(
            label == f"import {layer}" and size > 0
            for label, size in uploads_named(dest, "copy/slow")
        ):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        # taken at once, though the read under way never returns: the worker thread
        # reading the stalled source is left behind (it waited for the read's timeout)
        _, err = process.communicate(timeout=20)
        assert process.returncode == 130, (err, proxy.requests)
        proxy.release()
        assert "run again to continue" in err
        assert not (dest / paths.blob_dir(Digest.parse(layer)).lstrip("/")).exists()
        [(label, size)] = uploads_named(dest, "copy/slow")
        assert label == f"import {layer}" and size > 0
        result = layerfs("import", source, str(dest), "copy/slow:v1")
        assert result.returncode == 0, result.stderr
        assert proxy.blob_gets(layer)[-1] == f"bytes={size}-"  # continued where it stopped
        assert uploads_named(dest, "copy/slow") == []
        assert layerfs("fsck", str(dest)).returncode == 0
    finally:
        proxy.stop()


async def test_shared_blob_is_fetched_once(docker_registry: DockerRegistry, tmp_path: Path) -> None:
    rng = random.Random(8)
    shared = random_tar(rng)
    arches = {
        a: image_of([shared, random_tar(rng)], seed=i, arch=a)
        for i, a in enumerate(["amd64", "arm64"])
    }
    write_oci_index_layout(arches, tmp_path / "multi", "t")
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{tmp_path / 'multi'}:t",
           f"docker://{docker_registry.host}/src/multi:latest")  # fmt: skip
    proxy = Proxy(docker_registry.host)
    try:
        result = layerfs("import", f"docker://{proxy.host}/src/multi", str(tmp_path / "d"), "m/x")
        assert result.returncode == 0, result.stderr
        blob_gets = [p for m, p, _ in proxy.requests if m == "GET" and "/blobs/" in p]
        assert len(blob_gets) == len(set(blob_gets)) == 5  # 1 shared + 2 own layers + 2 configs
    finally:
        proxy.stop()
    top = await resolve_tag(tmp_path / "d", "m/x", "latest")
    exported = layerfs("export", str(tmp_path / "d"), "m/x:latest", f"oci:{tmp_path / 'out'}:t")
    assert exported.returncode == 0, exported.stderr
    assert sha256(raw_manifest(f"oci:{tmp_path / 'out'}:t")) == str(top)
    skopeo("copy", "--all", f"oci:{tmp_path / 'out'}:t", f"dir:{tmp_path / 'check'}")


async def test_docker_archive_in_and_out(store: Store, tmp_path: Path) -> None:
    image = make_image(seed=31, layers=2)
    write_oci_layout(image, tmp_path / "in", "v1")
    archive = tmp_path / "saved.tar"
    skopeo("copy", f"oci:{tmp_path / 'in'}:v1", f"docker-archive:{archive}:app/saved:v1")
    result = layerfs(
        "import", f"docker-archive:{archive}", store.spec, "app/saved:v1", env=store.env
    )
    assert result.returncode == 0, result.stderr
    digest = result.stdout.split("digest: ")[1].strip()
    # the config survives byte for byte, so docker load would give the same image id
    saved_config = json.loads(skopeo("inspect", "--raw", f"docker-archive:{archive}").stdout)
    out = tmp_path / "out.tar"
    exported = layerfs("export", store.spec, "app/saved:v1", str(out), env=store.env)
    assert exported.returncode == 0, exported.stderr
    assert (
        json.loads(raw_manifest(f"docker-archive:{out}"))["config"]["digest"]
        == (saved_config["config"]["digest"])
    )
    back = layerfs("import", str(out), store.spec, "app/back:v1", env=store.env)
    assert back.returncode == 0 and f"digest: {digest}" in back.stdout  # same manifest again


async def test_token_auth(store_dir: Path, tmp_path: Path) -> None:
    tokens = TokenServer(tmp_path, "alice", "s3cret")
    registry = DockerRegistry(tmp_path, {"filesystem": {"rootdirectory": str(store_dir)}})
    registry.config["auth"] = tokens.registry_auth()
    registry.start()
    try:
        image = make_image(seed=41)
        write_oci_layout(image, tmp_path / "in", "v1")
        # push with layerfs export (needs push scope), then import it back
        local = tmp_path / "local"
        assert (
            layerfs("import", f"oci:{tmp_path / 'in'}:v1", str(local), "app/auth:v1").returncode
            == 0
        )
        target = f"docker://{registry.host}/app/auth:v1"
        refused = layerfs("export", str(local), "app/auth:v1", target)
        assert refused.returncode == 1 and "token server refused" in refused.stderr
        pushed = layerfs("export", "--creds", "alice:s3cret", str(local), "app/auth:v1", target)
        assert pushed.returncode == 0, pushed.stderr
        pulled = layerfs("import", "--creds", "alice:s3cret", target, str(tmp_path / "d"), "x/y:v1")
        assert pulled.returncode == 0, pulled.stderr
        assert f"digest: {image.manifest_digest}" in pulled.stdout
        assert "repository:app/auth:pull,push" in tokens.scopes
        assert "repository:app/auth:pull" in tokens.scopes
    finally:
        registry.stop()
        tokens.stop()


@pytest.mark.parametrize(
    "source, message",
    [
        ("oci:/nonexistent", "is not an OCI image layout"),
        ("/nonexistent", "no such directory or file"),
        ("docker://127.0.0.1:9/x/y:v1", "Connection refused"),
    ],
)
def test_bad_sources(tmp_path: Path, source: str, message: str) -> None:
    result = layerfs("import", "--retries", "1", source, str(tmp_path / "s"), "a/b:v1")
    assert result.returncode == 1 and message in result.stderr


def test_local_locations_do_not_load_the_http_client(tmp_path: Path) -> None:
    """requests (about 0.1 s of start-up) loads only for docker:// locations."""
    program = (
        "import sys, layerfs.cli, layerfs.images as i\n"
        f"try:\n    i.open_source('oci:{tmp_path}/in')\nexcept i.SourceError:\n    pass\n"
        f"i.open_destination('oci:{tmp_path}/out', 'a/b:c')\n"
        "assert 'requests' not in sys.modules, 'loaded for oci:'\n"
        "i.open_source('docker://127.0.0.1:1/a/b:c')\n"
        "assert 'requests' in sys.modules, 'docker:// did not load it'\n"
    )
    result = subprocess.run([str(Path(LAYERFS).parent / "python"), "-c", program], timeout=60)
    assert result.returncode == 0


def test_the_command_imports_its_modules_with_the_collector_paused() -> None:
    """Collections while trio and click are imported are wasted start-up work: the
    ``layerfs`` entry point pauses the collector, then freezes what the import made
    and turns collection back on."""
    python = str(Path(LAYERFS).parent / "python")
    counts = "sum(s['collections'] for s in gc.get_stats())"
    plain = subprocess.run(
        [python, "-c", f"import gc, layerfs.cli; print({counts})"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    program = (
        "import gc, sys\n"
        "sys.argv = ['layerfs', '--version']\n"
        "from layerfs import launch\n"
        "try:\n    launch.main()\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
        "assert 'layerfs.cli' in sys.modules and gc.isenabled()\n"
        f"print({counts}, gc.get_freeze_count())\n"
    )
    launched = subprocess.run(
        [python, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    collections, frozen = map(int, launched.stdout.split()[-2:])
    # what runs after the import (click's --version) may collect a few times
    assert collections < int(plain.stdout) / 3
    assert frozen > 10_000
