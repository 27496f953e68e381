"""SeaweedFS (``weed server -s3``) on free loopback ports, for the S3 driver's tests."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config


def free_port_pair() -> int:
    """A port whose +10000 neighbour (SeaweedFS's gRPC port) is free as well."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


RELAUNCH_AFTER = 25  # seconds a start may take before the server is started again


class SeaweedFS:
    def __init__(self, workdir: Path, volume_mib: int = 256, volumes: int = 0) -> None:
        """``volume_mib`` and ``volumes`` (0: as many as the free disk holds) size the
        volume server: when every volume of a bucket is full, uploads wait for new ones."""
        self.workdir = workdir
        self.volume_mib = volume_mib
        self.volumes = volumes
        self.s3_port = free_port_pair()
        self.ports = [free_port_pair() for _ in range(3)]  # master, volume, filer
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SeaweedFS:
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        data = self.workdir / "seaweed"
        data.mkdir(parents=True, exist_ok=True)
        args = [
            weed, "server", f"-dir={data}", "-s3", f"-s3.port={self.s3_port}",
            f"-master.port={self.ports[0]}", f"-volume.port={self.ports[1]}",
            f"-filer.port={self.ports[2]}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-volume.max={self.volumes}", f"-master.volumeSizeLimitMB={self.volume_mib}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]  # fmt: skip
        self.log = open(self.workdir / "seaweed.log", "ab")  # noqa: SIM115
        deadline = time.monotonic() + 90
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        launched = time.monotonic()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                # right after a kill its ports can still be held for a moment: try again
                time.sleep(1)
                self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
                launched = time.monotonic()
                continue
            if self._serves_objects():
                return self
            if time.monotonic() - launched > RELAUNCH_AFTER:
                # restarted on its old data, its master sometimes never settles on a
                # raft leader (seen: silent after "Not current leader"): start it again
                self.process.kill()
                self.process.wait()
                continue
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("SeaweedFS did not come up; see " + str(self.workdir))

    def _serves_objects(self) -> bool:
        """The gateway answers before its volumes do: ready means a put and a get work."""
        try:
            urllib.request.urlopen(self.endpoint, timeout=1)
        except OSError as exc:
            if not getattr(exc, "code", None):  # no HTTP answer yet
                return False
        client = self.client()
        try:
            with contextlib.suppress(
                client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists
            ):
                client.create_bucket(Bucket="readiness")
            client.put_object(Bucket="readiness", Key="probe", Body=b"ok")
            return client.get_object(Bucket="readiness", Key="probe")["Body"].read() == b"ok"
        except Exception:
            return False

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="any",
            aws_secret_access_key="any",
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
            ),
        )

    def registry_storage(self, bucket: str, root: str, chunksize: int = 5 << 20) -> dict:
        """docker-registry's ``storage`` section for its s3 driver on this gateway."""
        return {
            "s3": {
                "region": "us-east-1",
                "regionendpoint": self.endpoint,
                "bucket": bucket,
                "rootdirectory": root,
                "accesskey": "any",
                "secretkey": "any",
                "secure": False,
                "v4auth": True,
                "chunksize": chunksize,
            },
            "redirect": {"disable": True},
        }

    def aws_env(self) -> dict[str, str]:
        """The environment a layerfs mount of this gateway runs with."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "any",
            "AWS_SECRET_ACCESS_KEY": "any",
            "AWS_REGION": "us-east-1",
        }

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # a graceful stop takes ~30 s
            self.process.wait()
            self.log.close()
