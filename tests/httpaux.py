"""HTTP helpers for the import/export tests: a forwarding proxy in front of a real
docker-registry that can cut a blob in the middle or send it slowly, and a token
server that signs the JWTs docker-registry's token auth verifies."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .registry import free_port


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive, as registries speak it) and no log line per request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[_Server, int]:
    """``handler`` on a free loopback port, in a thread of its own."""
    port = free_port()
    server = _Server(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


class Proxy:
    """Forwards to ``upstream`` (host:port). ``cut`` = (digest, bytes): the first
    GET of that blob is dropped after that many bytes. ``drop`` = text: the first PUT
    whose path holds it is dropped after half its body, with no answer. ``fail`` =
    (text, status, S3 error code, times): that many requests whose path holds the text
    are answered with that error, as an S3 server does. ``rate`` slows blob bodies.
    ``stall`` = bytes: a blob body stops after that many until ``release``."""

    def __init__(
        self,
        upstream: str,
        cut: tuple[str, int] | None = None,
        rate: int = 0,
        drop: str | None = None,
        fail: tuple[str, int, str, int] | None = None,
        stall: int | None = None,
    ) -> None:
        self.upstream, self.cut, self.rate, self.drop = upstream, cut, rate, drop
        self.stall = stall
        self.released = threading.Event()
        self.fail = fail
        self.requests: list[tuple[str, str, str]] = []  # method, path, Range
        proxy = self

        class Handler(QuietHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                proxy.requests.append((self.command, self.path, self.headers.get("Range", "")))
                if proxy._take_drop(self.command, self.path):
                    self.rfile.read(length // 2)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if failure := proxy._take_fail(self.path):
                    self.rfile.read(length)
                    status, code = failure
                    error = f"<Error><Code>{code}</Code><Message>injected</Message></Error>"
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error.encode())
                    return
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.end_headers()
                cut = proxy._take_cut(self.command, self.path)
                sent = 0
                while chunk := resp.read(64 << 10):
                    if cut is not None and sent + len(chunk) > cut:
                        self.wfile.write(chunk[: cut - sent])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    if proxy.rate and "/blobs/" in self.path:
                        time.sleep(len(chunk) / proxy.rate)
                    if proxy.stall is not None and "/blobs/" in self.path and sent >= proxy.stall:
                        self.wfile.flush()
                        proxy.released.wait(60)
                conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _forward

        self.server, self.port = serve(Handler)
        self.host = f"127.0.0.1:{self.port}"

    def _take_cut(self, method: str, path: str) -> int | None:
        if self.cut and method == "GET" and path.endswith("/blobs/" + self.cut[0]):
            at, self.cut = self.cut[1], None
            return at
        return None

    def _take_fail(self, path: str) -> tuple[int, str] | None:
        if self.fail and self.fail[0] in path and self.fail[3] > 0:
            text, status, code, times = self.fail
            self.fail = (text, status, code, times - 1)
            return status, code
        return None

    def _take_drop(self, method: str, path: str) -> bool:
        if self.drop and method == "PUT" and self.drop in path:
            self.drop = None
            return True
        return False

    def blob_gets(self, digest: str) -> list[str]:
        """The Range headers of every GET of a blob."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith("/blobs/" + digest)]

    def release(self) -> None:
        """Let stalled blob bodies go on, and stall no more."""
        self.stall = None
        self.released.set()

    def stop(self) -> None:
        self.release()
        self.server.shutdown()


class TokenServer:
    """Issues RS256 tokens with the signing certificate in ``x5c``, the way
    docker-registry's ``auth.token`` with a ``rootcertbundle`` checks them."""

    def __init__(self, workdir: Path, user: str, password: str) -> None:
        import jwt
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "layerfs test token issuer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        self.bundle = workdir / "token-cert.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.scopes: list[str] = []
        self.refused = 0
        server = self
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                if self.headers.get("Authorization") != expected:
                    server.refused += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                scope = query.get("scope", [""])[0]
                server.scopes.append(scope)
                _, repo, actions = scope.split(":") if scope.count(":") == 2 else ("", "", "")
                now = int(time.time())
                claims = {
                    "iss": "layerfs-test", "sub": user, "aud": "layerfs-registry",
                    "iat": now, "nbf": now - 10, "exp": now + 600, "jti": str(now),
                    "access": [{"type": "repository", "name": repo, "actions": actions.split(",")}],
                }  # fmt: skip
                token = jwt.encode(claims, key, algorithm="RS256", headers={"x5c": [x5c]})
                body = json.dumps({"token": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server, self.port = serve(Handler)

    def registry_auth(self) -> dict:
        return {
            "token": {
                "realm": f"http://127.0.0.1:{self.port}/token",
                "service": "layerfs-registry",
                "issuer": "layerfs-test",
                "rootcertbundle": str(self.bundle),
            }
        }

    def stop(self) -> None:
        self.server.shutdown()
