"""A real ``docker-registry serve`` on a free loopback port, and a small client for
its HTTP API (upload endpoints included, with the signed ``_state`` they demand)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SECRET = "layerfs-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class DockerRegistry:
    """One registry process over a filesystem (or S3) store."""

    def __init__(self, workdir: Path, storage: dict, readonly: bool = False) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        if readonly:
            storage = {**storage, "maintenance": {"readonly": {"enabled": True}}}
        self.config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {**storage, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": SECRET},
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, under: Sequence[str] = ()) -> DockerRegistry:
        """Start the registry (``under``: a command it runs beneath, such as strace)."""
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is not installed: run scripts/setup")
        config = self.workdir / f"registry-{self.port}.yml"
        config.write_text(json.dumps(self.config))  # JSON is YAML
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.log = open(self.workdir / f"registry-{self.port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*under, binary, "serve", str(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_text()}")
            try:
                if self.request("GET", "/v2/").status in (200, 401):  # 401: token auth
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not answer: {self.log_text()}")

    def garbage_collect(self, *flags: str) -> subprocess.CompletedProcess[str]:
        """``docker-registry garbage-collect`` over this registry's store."""
        config = self.workdir / f"registry-{self.port}.yml"
        config.write_text(json.dumps(self.config))
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        result = subprocess.run(
            ["docker-registry", "garbage-collect", *flags, str(config)],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        return result

    def log_text(self) -> str:
        return (self.workdir / f"registry-{self.port}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            with contextlib.suppress(OSError):  # the registry, run under a tracer
                for pid in children.read_text().split():
                    os.kill(int(pid), signal.SIGTERM)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self.log.close()

    # HTTP -------------------------------------------------------------------
    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> Response:
        url = path if path.startswith("http") else self.url + path
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return Response(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as err:
            return Response(err.code, dict(err.headers.items()), err.read())

    def start_upload(self, repo: str) -> str:
        """POST an upload; returns its Location (with the signed state)."""
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        assert resp.status == 202, (resp.status, resp.body)
        return resp.headers["Location"]

    def patch(self, location: str, chunk: bytes) -> str:
        resp = self.request("PATCH", location, chunk, {"Content-Type": "application/octet-stream"})
        assert resp.status == 202, (resp.status, resp.body)
        return resp.headers["Location"]

    def finish(self, location: str, digest: str, body: bytes = b"") -> Response:
        sep = "&" if "?" in location else "?"
        return self.request(
            "PUT",
            f"{location}{sep}digest={urllib.parse.quote(digest)}",
            body,
            {"Content-Type": "application/octet-stream"},
        )

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        resp = self.finish(self.start_upload(repo), digest, data)
        assert resp.status == 201, (resp.status, resp.body)
        return digest

    def get_blob(self, repo: str, digest: str) -> Response:
        return self.request("GET", f"/v2/{repo}/blobs/{digest}")

    def get_manifest(self, repo: str, reference: str, accept: str) -> Response:
        return self.request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})


def signed_upload_location(
    repo: str, upload_id: str, offset: int, started_at: str, secret: str = SECRET
) -> str:
    """The Location the registry would hand out for an upload at ``offset``: its
    ``_state`` is base64url(HMAC-SHA256(secret, json) + json)."""
    state = json.dumps(
        {"Name": repo, "UUID": upload_id, "Offset": offset, "StartedAt": started_at},
        separators=(",", ":"),
    ).encode()
    mac = hmac.new(secret.encode(), state, hashlib.sha256).digest()
    token = base64.urlsafe_b64encode(mac + state).decode()
    return f"/v2/{repo}/blobs/uploads/{upload_id}?_state={urllib.parse.quote(token)}"


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("skopeo")
    if binary is None:
        raise RuntimeError("skopeo is not installed: run scripts/setup")
    env = {**os.environ, "HOME": os.environ.get("HOME", "/root")}
    result = subprocess.run(
        [binary, "--insecure-policy", *args], capture_output=True, text=True, env=env, timeout=300
    )
    if result.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed:\n{result.stderr}")
    return result


def skopeo_push(layout: Path, tag: str, registry: DockerRegistry, reference: str) -> None:
    """Push tag ``tag`` of an OCI layout to ``registry`` as ``reference`` (repo:tag)."""
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"oci:{layout}:{tag}",
        f"docker://{registry.host}/{reference}",
    )


def skopeo_pull(registry: DockerRegistry, reference: str, dest: Path) -> Path:
    """Pull ``reference`` from ``registry`` into a ``dir:`` layout (verifies digests)."""
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/{reference}", f"dir:{dest}")
    return dest
