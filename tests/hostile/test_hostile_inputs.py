"""import and export against hostile sources and destinations: symlinks out of an OCI
layout or a tarball, endless bodies and manifests, too many layers, nested indexes,
members that point outside an archive, credentials asked for by a realm that should
not get them, and destinations with symlinks planted in them. Each is refused with
one line and exit 1, leaves no readable copy in the store and writes nothing
outside its destination."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from layerfs.images.sources import MAX_MANIFEST, MAX_REFERENCES
from layerfs.storage.manifests import MAX_INDEX_DEPTH

from ..httpaux import QuietHandler, serve
from ..images import descriptor, make_image, sha256, write_oci_layout
from ..mounts import assert_refused, run_layerfs

SECRET = b"root:$y$j9T$hostile-input-secret:19000:0:99999:7:::\n"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def layerfs(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return run_layerfs(*args, env=env, timeout=120)


def refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """A refusal: exit 1, no traceback, one line naming the reason."""
    return assert_refused(result, 1, *words)


def store_holds(store: Path, needle: bytes) -> list[Path]:
    return [p for p in store.rglob("*") if p.is_file() and needle in p.read_bytes()]


# OCI layouts -------------------------------------------------------------------------


def test_a_symlinked_blob_is_not_followed_and_leaves_no_copy(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    image = make_image(seed=11, layers=1)
    layout = write_oci_layout(image, tmp_path / "layout", "v1")
    layer = layout / "blobs/sha256" / sha256(image.layers[0]).split(":")[1]
    layer.unlink()
    os.symlink(secret, layer)
    store = tmp_path / "store"
    refused(layerfs("import", f"oci:{layout}:v1", str(store), "app:v1"), "symbolic link")
    assert store_holds(store, SECRET) == []


def test_a_blob_longer_than_its_descriptor_leaves_no_copy(tmp_path: Path) -> None:
    """The wrong-size case of the issue, without the symlink: the bytes read are
    the layout's own, and still nothing of them stays in the store."""
    image = make_image(seed=12, layers=1)
    layout = write_oci_layout(image, tmp_path / "layout", "v1")
    layer = layout / "blobs/sha256" / sha256(image.layers[0]).split(":")[1]
    layer.write_bytes(image.layers[0] + SECRET)  # longer than the manifest says
    store = tmp_path / "store"
    refused(layerfs("import", f"oci:{layout}:v1", str(store), "app:v1"), "size mismatch")
    assert store_holds(store, SECRET) == []
    # no upload is kept for it (others cut short by the failure stay, to resume)
    assert store_holds(store, f"import {sha256(image.layers[0])}".encode()) == []


@pytest.mark.parametrize("what", ["symlink to /dev/zero", "over 4 MiB", "not JSON", "no digest"])
def test_index_json_is_bounded_and_checked(tmp_path: Path, what: str) -> None:
    image = make_image(seed=13, layers=1)
    layout = write_oci_layout(image, tmp_path / "layout", "v1")
    index = layout / "index.json"
    if what == "symlink to /dev/zero":
        index.unlink()
        os.symlink("/dev/zero", index)
        word = "symbolic link"
    elif what == "over 4 MiB":
        index.write_bytes(b" " * (MAX_MANIFEST + 1))
        word = "larger than"
    elif what == "not JSON":
        index.write_bytes(b"{nope")
        word = "not JSON"
    else:
        doc = json.loads(index.read_bytes())
        del doc["manifests"][0]["digest"]
        index.write_text(json.dumps(doc))
        word = "no valid digest"
    refused(layerfs("import", f"oci:{layout}", str(tmp_path / "store"), "app:v1"), word)


def _layout_of_manifests(tmp_path: Path, top: bytes, others: list[bytes]) -> Path:
    layout = tmp_path / "layout"
    blobs = layout / "blobs/sha256"
    blobs.mkdir(parents=True)
    for payload in (top, *others):
        (blobs / sha256(payload).split(":")[1]).write_bytes(payload)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entry = {**descriptor(OCI_INDEX, top)}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return layout


def test_too_many_layers_are_refused_before_any_is_fetched(tmp_path: Path) -> None:
    config = b"{}"
    layers = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 1,
         "digest": "sha256:" + f"{i:064x}"}
        for i in range(MAX_REFERENCES + 1)
    ]  # fmt: skip
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": descriptor("application/vnd.oci.image.config.v1+json", config),
         "layers": layers}
    ).encode()  # fmt: skip
    assert len(manifest) < MAX_MANIFEST  # refused for its count, not its size
    layout = _layout_of_manifests(tmp_path, manifest, [config])
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["mediaType"] = OCI_MANIFEST
    (layout / "index.json").write_text(json.dumps(index))
    store = tmp_path / "store"
    refused(layerfs("import", f"oci:{layout}", str(store), "app:v1"), f"over {MAX_REFERENCES}")
    assert list(store.rglob("_layers/*/*")) == []


def test_indexes_nested_too_deep_are_refused(tmp_path: Path) -> None:
    image = make_image(seed=14, layers=1)
    payloads = [image.manifest]
    child = descriptor(OCI_MANIFEST, image.manifest)
    for _ in range(MAX_INDEX_DEPTH + 1):
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child]})
        payloads.append(index.encode())
        child = descriptor(OCI_INDEX, index.encode())
    layout = _layout_of_manifests(tmp_path, payloads[-1], payloads[:-1])
    for digest, data in image.blobs.items():
        (layout / "blobs/sha256" / digest.split(":")[1]).write_bytes(data)
    refused(layerfs("import", f"oci:{layout}", str(tmp_path / "store"), "app:v1"), "nested")


# docker-archive tarballs -------------------------------------------------------------


def _archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _legacy(config_name: str, layer_names: list[str]) -> bytes:
    return json.dumps(
        [{"Config": config_name, "RepoTags": ["a:b"], "Layers": layer_names}]
    ).encode()


def _link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


ARCHIVES: dict[str, tuple[Callable[[], list[tuple[tarfile.TarInfo, bytes]]], str]] = {
    "dot-dot member": (
        lambda: [(_file("manifest.json"), _legacy("c.json", ["../l.tar"])),
                 (_file("c.json"), b"{}"), (_file("../l.tar"), b"x")],
        "points outside the archive",
    ),
    "absolute member": (
        lambda: [(_file("manifest.json"), _legacy("/etc/c.json", [])),
                 (_file("/etc/c.json"), b"{}")],
        "points outside the archive",
    ),
    "symlink layer": (
        lambda: [(_file("manifest.json"), _legacy("c.json", ["l.tar"])),
                 (_file("c.json"), b"{}"), (_link("l.tar", tarfile.SYMTYPE, "/etc/shadow"), b"")],
        "is a link, not followed",
    ),
    "hardlink config": (
        lambda: [(_file("manifest.json"), _legacy("c.json", [])),
                 (_link("c.json", tarfile.LNKTYPE, "/etc/shadow"), b"")],
        "is a link, not followed",
    ),
    "no Config": (
        lambda: [(_file("manifest.json"), json.dumps([{"Layers": []}]).encode())],
        "names no Config",
    ),
    "bad JSON": (lambda: [(_file("manifest.json"), b"[{")], "not JSON"),
    "index entry without digest": (
        lambda: [(_file("index.json"),
                  json.dumps({"schemaVersion": 2, "manifests": [{"size": 3}]}).encode())],
        "no valid digest",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ARCHIVES))
def test_hostile_archives_are_refused_in_one_line(tmp_path: Path, case: str) -> None:
    members, word = ARCHIVES[case]
    archive = _archive(tmp_path / "x.tar", members())
    store = tmp_path / "store"
    refused(layerfs("import", f"docker-archive:{archive}", str(store), "app:v1"), word)
    assert store_holds(store, b"root:") == []


# registries that misbehave -----------------------------------------------------------


class HostileRegistry:
    """A registry that answers what it is told: an endless blob, an endless
    manifest, a token challenge naming any realm, a redirect to another host."""

    def __init__(self, manifest: bytes = b"", endless_manifest: bool = False) -> None:
        self.manifest, self.endless_manifest = manifest, endless_manifest
        self.realm = ""
        self.basic = False  # ask for basic auth
        self.redirect_to = ""
        self.seen: list[tuple[str, str, str]] = []  # method, path, Authorization
        self.sent = 0
        registry = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                registry.seen.append(
                    (self.command, self.path, self.headers.get("Authorization", ""))
                )
                if registry.basic and not self.headers.get("Authorization"):
                    self._answer(401, b"", {"WWW-Authenticate": 'Basic realm="x"'})
                elif registry.realm and not self.headers.get("Authorization"):
                    self._answer(401, b"", {"WWW-Authenticate":
                                 f'Bearer realm="{registry.realm}",service="x"'})  # fmt: skip
                elif registry.redirect_to and "/blobs/" in self.path:
                    self._answer(307, b"", {"Location": registry.redirect_to + self.path})
                elif "/manifests/" in self.path and not registry.endless_manifest:
                    self._answer(200, registry.manifest, {"Content-Type": OCI_MANIFEST})
                elif "/manifests/" in self.path or "/blobs/" in self.path:
                    self._endless()
                else:
                    self._answer(200, b"{}", {})

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _endless(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", OCI_MANIFEST)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"A" * (64 << 10)
                try:
                    while registry.sent < 64 << 20:  # a bound for the test itself
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        registry.sent += len(chunk)
                except OSError:
                    pass  # the client stopped reading: what a bounded client does
                self.close_connection = True

        self.server, self.port = serve(Handler)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileRegistry]]:
    made: list[HostileRegistry] = []

    def make(**kwargs: object) -> HostileRegistry:
        made.append(HostileRegistry(**kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for registry in made:
        registry.stop()


def _small_manifest() -> bytes:
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 1000,
             "digest": "sha256:" + "ab" * 32}  # fmt: skip
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {**descriptor("application/vnd.oci.image.config.v1+json", config),
                    "digest": "sha256:" + "cd" * 32, "size": 1000},
         "layers": [layer]}
    ).encode()  # fmt: skip


def test_an_endless_blob_body_is_cut_at_its_size(tmp_path: Path, hostile) -> None:  # type: ignore[no-untyped-def]
    registry = hostile(manifest=_small_manifest())
    store = tmp_path / "store"
    refused(layerfs("import", f"docker://{registry.host}/app:v1", str(store), "app:v1"), "size")
    assert registry.sent < 16 << 20  # stopped reading long before the test's own bound
    assert [p for p in store.rglob("*") if p.is_file() and p.stat().st_size > 1000] == []


def test_an_endless_manifest_is_refused(tmp_path: Path, hostile) -> None:  # type: ignore[no-untyped-def]
    registry = hostile(endless_manifest=True)
    result = layerfs("import", f"docker://{registry.host}/app:v1", str(tmp_path / "s"), "app:v1")
    refused(result, "larger than")
    assert registry.sent < MAX_MANIFEST + (8 << 20)


def test_credentials_go_to_no_plain_http_realm_off_loopback(tmp_path: Path, hostile) -> None:  # type: ignore[no-untyped-def]
    registry = hostile(manifest=_small_manifest())
    registry.realm = "http://192.0.2.7/token"  # TEST-NET-1: nobody is there
    result = layerfs(
        "import", "--creds", "me:hunter2", f"docker://{registry.host}/app:v1",
        str(tmp_path / "s"), "app:v1",
    )  # fmt: skip
    refused(result, "credentials are not sent")
    assert all("hunter2" not in auth for _, _, auth in registry.seen)


@pytest.mark.parametrize("kept_by", ["REGISTRY_AUTH_FILE", "DOCKER_CONFIG"])
def test_authorization_is_dropped_on_a_redirect_to_another_host(  # type: ignore[no-untyped-def]
    tmp_path: Path, hostile, kept_by: str
) -> None:
    """Basic auth from an auth file (podman's or docker's) reaches the registry, and not
    the host a blob redirect names (``localhost`` is another host than ``127.0.0.1``)."""
    image = make_image(seed=15, layers=1)
    registry = hostile(manifest=image.manifest)
    other = hostile(manifest=image.manifest)
    registry.redirect_to = f"http://localhost:{other.port}"
    registry.basic = True
    token = base64.b64encode(b"me:hunter2").decode()
    logins = json.dumps({"auths": {registry.host: {"auth": token}}})
    if kept_by == "REGISTRY_AUTH_FILE":
        (tmp_path / "auth.json").write_text(logins)
        env = {"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    else:
        (tmp_path / "config.json").write_text(logins)
        env = {"DOCKER_CONFIG": str(tmp_path), "HOME": str(tmp_path / "home")}
    layerfs("import", f"docker://{registry.host}/app:v1", str(tmp_path / "s"), "app:v1", env=env)
    basic = "Basic " + token
    assert any(auth == basic for _, _, auth in registry.seen), registry.seen
    assert other.seen, "the redirect was not followed"
    assert all(auth == "" for _, _, auth in other.seen), other.seen


# export destinations -----------------------------------------------------------------


@pytest.fixture
def exported_store(tmp_path: Path) -> Path:
    image = make_image(seed=17, layers=1)
    store = tmp_path / "store"
    layout = write_oci_layout(image, tmp_path / "in", "v1")
    assert layerfs("import", f"oci:{layout}:v1", str(store), "app:v1").returncode == 0
    return store


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file an export must never write: symlinks in its destination point here."""
    path = tmp_path / "victim"
    path.write_bytes(b"root-owned\n")
    return path


def test_export_replaces_symlinks_in_a_layout_and_never_writes_through(
    tmp_path: Path, exported_store: Path, victim: Path
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    os.symlink(victim, dest / "oci-layout")
    (dest / "blobs").mkdir()
    os.symlink(tmp_path, dest / "blobs" / "sha256")  # blobs would land outside
    result = layerfs("export", str(exported_store), "app:v1", f"oci:{dest}")
    refused(result, "symbolic link")
    assert victim.read_bytes() == b"root-owned\n"
    assert sorted(p.name for p in tmp_path.iterdir() if len(p.name) == 64) == []
    (dest / "blobs" / "sha256").unlink()
    result = layerfs("export", str(exported_store), "app:v1", f"oci:{dest}")
    assert result.returncode == 0, result.stderr
    assert victim.read_bytes() == b"root-owned\n"
    assert not (dest / "oci-layout").is_symlink()  # the link itself was replaced
    assert list(dest.rglob(".partial-*")) == []


def test_export_refuses_a_symlinked_destination(
    tmp_path: Path, exported_store: Path, victim: Path
) -> None:
    tar = tmp_path / "x.tar"
    os.symlink(victim, tar)
    refused(layerfs("export", str(exported_store), "app:v1", str(tar)), "symbolic link")
    linked_dir = tmp_path / "linked"
    os.symlink(tmp_path / "elsewhere", linked_dir)
    refused(layerfs("export", str(exported_store), "app:v1", f"oci:{linked_dir}"), "symbolic link")
    assert victim.read_bytes() == b"root-owned\n"
    assert not (tmp_path / "elsewhere").exists()


def test_export_to_a_tarball_ignores_a_planted_partial(
    tmp_path: Path, exported_store: Path, victim: Path
) -> None:
    tar = tmp_path / "x.tar"
    os.symlink(victim, tmp_path / "x.tar.partial")  # where an older export wrote
    result = layerfs("export", str(exported_store), "app:v1", str(tar))
    assert result.returncode == 0, result.stderr
    assert victim.read_bytes() == b"root-owned\n"
    assert tar.is_file() and not tar.is_symlink()
    with tarfile.open(tar) as written:
        assert "index.json" in written.getnames()
    leftovers = [p.name for p in tmp_path.iterdir() if "partial" in p.name]
    assert leftovers == ["x.tar.partial"]  # the planted one, untouched; none of ours
