"""A small client of the registry HTTP API (v2) on ``requests``: manifests, blobs
with ranges, monolithic blob pushes, and the bearer-token and basic auth that real
registries ask for. Plain HTTP only for loopback hosts."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator

import requests

from ..storage.digest import Digest
from ..storage.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
)
from .errors import RegistryHTTPError, TransientError

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


class RegistryClient:
    def __init__(self, host: str, credentials: tuple[str, str] | None = None) -> None:
        self.host = host
        self.base = f"{'http' if is_loopback(host) else 'https'}://{host}/v2"
        self.credentials = credentials
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
        # ask for everything this kind of request needs, not only what the challenge named
        query = {"service": params.get("service", ""), "scope": scope}
        try:
            answer = self.session.get(
                params["realm"], params=query, auth=self.credentials, timeout=TIMEOUT
            )
        except (KeyError, requests.RequestException) as exc:
            raise TransientError(f"token request to {params.get('realm')}: {exc}") from None
        if answer.status_code != 200:
            raise RegistryHTTPError(f"token server refused: HTTP {answer.status_code}")
        body = answer.json()
        self.tokens[scope] = body.get("token") or body.get("access_token", "")
        return True

    @staticmethod
    def _check(resp: requests.Response, what: str) -> requests.Response:
        if resp.status_code >= 400:
            raise RegistryHTTPError(f"{what}: HTTP {resp.status_code} {resp.text[:200]}")
        return resp

    # pulling -------------------------------------------------------------------------
    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, Digest | None]:
        url = f"{self.base}/{repository}/manifests/{reference}"
        resp = self.request("GET", url, f"repository:{repository}:pull", headers={"Accept": ACCEPT})
        self._check(resp, f"manifest {repository}:{reference}")
        header = resp.headers.get("Docker-Content-Digest")
        return resp.content, Digest.parse(header) if header else None

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
