"""A small client of the registry HTTP API (v2) on ``requests``: manifests, blobs
with ranges, monolithic blob pushes, and the bearer-token and basic auth that real
registries ask for. Plain HTTP only for loopback hosts."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path

import requests

from ..storage.digest import Digest
from ..storage.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
)
from .errors import RegistryHTTPError, TransientError
from .sources import MAX_MANIFEST, SourceError

ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])
CHUNK = 1 << 20
TIMEOUT = (10, 60)  # connect, read: a stalled server fails the attempt, not the import
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 else host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def safe_for_credentials(url: str, registry_host: str) -> bool:
    """Whether a password may go to ``url``: over HTTPS, or plain HTTP on loopback."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and is_loopback(parts.netloc) and is_loopback(registry_host)


def auth_files() -> list[Path]:
    """Where podman, skopeo and docker keep registry logins, in the order they look."""
    found = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        found.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        found.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers/auth.json")
    found.append(Path.home() / ".config/containers/auth.json")
    docker = os.environ.get("DOCKER_CONFIG")
    found.append(Path(docker) / "config.json" if docker else Path.home() / ".docker/config.json")
    return found


def stored_credentials(host: str, files: list[Path] | None = None) -> tuple[str, str] | None:
    """The login for ``host`` in the first auth file that has one (``auths`` entries
    with ``auth``, base64 of USER:PASSWORD). Credential helpers are not run."""
    for path in auth_files() if files is None else files:
        try:
            with path.open("rb") as f:
                doc = json.loads(f.read(1 << 20))
        except (OSError, ValueError):
            continue
        auths = doc.get("auths") if isinstance(doc, dict) else None
        if not isinstance(auths, dict):
            continue
        for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/"):
            entry = auths.get(key)
            if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
                try:
                    user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    continue
                if sep:
                    return user, password
    return None


class RegistryClient:
    def __init__(self, host: str, credentials: tuple[str, str] | None = None) -> None:
        self.host = host
        self.base = f"{'http' if is_loopback(host) else 'https'}://{host}/v2"
        self.credentials = credentials or stored_credentials(host)
        self.session = requests.Session()
        self.tokens: dict[str, str] = {}  # scope -> bearer token
        self.basic = False

    def close(self) -> None:
        self.session.close()

    # requests with auth ----------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        scope: str,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        data: object = None,
    ) -> requests.Response:
        """One request, answering one auth challenge (a token for ``scope``, or basic)."""
        for _ in range(2):
            sent = dict(headers or {})
            if scope in self.tokens:
                sent["Authorization"] = f"Bearer {self.tokens[scope]}"
            auth = self.credentials if self.basic else None
            try:
                resp = self.session.request(
                    method, url, headers=sent, stream=stream, timeout=TIMEOUT, auth=auth,
                    data=data,
                )  # fmt: skip
            except requests.RequestException as exc:
                raise TransientError(f"{method} {url}: {exc}") from None
            if resp.status_code == 401 and self._authenticate(resp, scope):
                continue
            break
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TransientError(f"{method} {url}: HTTP {resp.status_code}")
        return resp

    def _authenticate(self, resp: requests.Response, scope: str) -> bool:
        """Answer a 401 challenge once; False when there is nothing more to try."""
        challenge = resp.headers.get("WWW-Authenticate", "")
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "basic" and self.credentials and not self.basic:
            self.basic = True
            return True
        if kind != "bearer":
            return False
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.get("realm", "")
        if self.credentials and not safe_for_credentials(realm, self.host):
            raise RegistryHTTPError(
                f"the token realm {realm!r} is neither HTTPS nor on loopback:"
                " credentials are not sent there"
            )
        # ask for everything this kind of request needs, not only what the challenge named
        query = {"service": params.get("service", ""), "scope": scope}
        try:
            answer = self.session.get(
                realm, params=query, auth=self.credentials, timeout=TIMEOUT, stream=True
            )
        except requests.RequestException as exc:
            raise TransientError(f"token request to {realm}: {exc}") from None
        if answer.status_code != 200:
            answer.close()
            raise RegistryHTTPError(f"token server refused: HTTP {answer.status_code}")
        try:
            body = json.loads(self._small_body(answer, f"token from {realm}", 1 << 20))
            self.tokens[scope] = body.get("token") or body.get("access_token", "")
        except (ValueError, AttributeError):
            raise RegistryHTTPError(f"token server {realm} answered no JSON object") from None
        return True

    @staticmethod
    def _check(resp: requests.Response, what: str) -> requests.Response:
        if resp.status_code >= 400:
            raise RegistryHTTPError(f"{what}: HTTP {resp.status_code} {resp.text[:200]}")
        return resp

    # pulling -------------------------------------------------------------------------
    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, Digest | None]:
        url = f"{self.base}/{repository}/manifests/{reference}"
        resp = self.request(
            "GET", url, f"repository:{repository}:pull", headers={"Accept": ACCEPT}, stream=True
        )
        self._check(resp, f"manifest {repository}:{reference}")
        header = resp.headers.get("Docker-Content-Digest")
        payload = self._small_body(resp, f"manifest {repository}:{reference}")
        return payload, Digest.parse(header) if header else None

    @staticmethod
    def _small_body(resp: requests.Response, what: str, limit: int = MAX_MANIFEST) -> bytes:
        """A body of at most ``limit`` bytes: an endless one is cut off and refused."""
        payload = bytearray()
        try:
            for chunk in resp.iter_content(CHUNK):
                payload += chunk
                if len(payload) > limit:
                    raise SourceError(f"{what} is larger than {limit} bytes: refused")
        except requests.RequestException as exc:
            raise TransientError(f"reading {resp.url}: {exc}") from None
        finally:
            resp.close()
        return bytes(payload)

    def get_blob(self, repository: str, digest: Digest, offset: int = 0) -> Iterator[bytes]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.request(
            "GET", f"{self.base}/{repository}/blobs/{digest}", f"repository:{repository}:pull",
            stream=True, headers=headers,
        )  # fmt: skip
        self._check(resp, f"blob {digest}")
        return self._body(resp, skip=offset if resp.status_code == 200 else 0)

    @staticmethod
    def _body(resp: requests.Response, skip: int) -> Iterator[bytes]:
        try:
            for chunk in resp.iter_content(CHUNK):
                if skip:  # the server ignored the range
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                if chunk:
                    yield chunk
        except requests.RequestException as exc:
            raise TransientError(f"reading {resp.url}: {exc}") from None
        finally:
            resp.close()

    # pushing -------------------------------------------------------------------------
    def has_blob(self, repository: str, digest: Digest) -> bool:
        scope = f"repository:{repository}:pull,push"
        resp = self.request("HEAD", f"{self.base}/{repository}/blobs/{digest}", scope)
        return resp.status_code == 200

    def put_blob(self, repository: str, digest: Digest, size: int, body: Iterable[bytes]) -> None:
        scope = f"repository:{repository}:pull,push"
        resp = self._check(
            self.request("POST", f"{self.base}/{repository}/blobs/uploads/", scope), "start upload"
        )
        location = resp.headers["Location"]
        if location.startswith("/"):
            location = self.base.rsplit("/v2", 1)[0] + location
        separator = "&" if "?" in location else "?"
        resp = self.request(
            "PUT", f"{location}{separator}digest={digest}", scope, data=body,
            headers={"Content-Type": "application/octet-stream"},  # sent chunked
        )  # fmt: skip
        self._check(resp, f"push blob {digest}")

    def put_manifest(
        self, repository: str, reference: str, payload: bytes, media_type: str
    ) -> None:
        resp = self.request(
            "PUT", f"{self.base}/{repository}/manifests/{reference}",
            f"repository:{repository}:pull,push", data=payload,
            headers={"Content-Type": media_type},
        )  # fmt: skip
        self._check(resp, f"push manifest {repository}:{reference}")
