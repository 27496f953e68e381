"""An import stopped inside a blob's finish: a cancelled import and Ctrl-C wait for the
finish under way, so no upload is left beside its blob; an import killed there leaves
one, and the next run removes it. On a store on disk, from an OCI layout."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio

from layerfs.drivers.filesystem import FilesystemDriver
from layerfs.faults import ENV as CRASH_AT
from layerfs.images.copy import Importer
from layerfs.images.sources import OciLayoutSource
from layerfs.images.transfer import TransferManager
from layerfs.storage import Digest, Registry, paths

from ..images import make_image, uploads_named, write_oci_layout
from ..mounts import run_layerfs as layerfs
from ..wrappers import Passthrough

REPOSITORY = "r/x"


class PausingAtLayerLink(Passthrough):
    """Runs ``at_link`` once, when the first finish writes its layer link (finish 4 in
    layerfs/storage/UPLOADS.md: the blob moved, its upload still there)."""

    def __init__(self, inner: FilesystemDriver, at_link: Callable[[], Awaitable[None]]) -> None:
        super().__init__(inner)
        self.at_link = at_link
        self.linked: Digest | None = None

    async def put_content(self, path: str, content: bytes) -> None:
        if self.linked is None and path.startswith(paths.layers_dir(REPOSITORY)):
            self.linked = paths.digest_of_link(path)
            await self.at_link()
        await self.inner.put_content(path, content)


def _importer(tmp_path: Path, driver: PausingAtLayerLink) -> Importer:
    layout = write_oci_layout(make_image(seed=3, layers=2), tmp_path / "in", "v1")
    source = OciLayoutSource(str(layout), "v1")
    return Importer(source, Registry(driver), REPOSITORY, TransferManager(1, retries=0))


def _finished_whole(store: Path, digest: Digest | None) -> None:
    """The blob whose finish was under way is stored and linked, and no upload is left."""
    assert digest is not None
    assert (store / paths.blob_data(digest).lstrip("/")).is_file()
    assert (store / paths.layer_link(REPOSITORY, digest).lstrip("/")).is_file()
    assert uploads_named(store, REPOSITORY) == []


async def test_a_cancelled_import_lets_the_finish_under_way_end(tmp_path: Path) -> None:
    reached, release = trio.Event(), trio.Event()

    async def at_link() -> None:
        reached.set()
        await release.wait()

    driver = PausingAtLayerLink(FilesystemDriver(str(tmp_path / "store")), at_link)
    importer = _importer(tmp_path, driver)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(importer.run, "v1")
        await reached.wait()
        nursery.cancel_scope.cancel()  # as a failing sibling transfer does
        release.set()
    _finished_whole(tmp_path / "store", driver.linked)


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT as an interactive Python has it, whatever the suite was started under (a
    background job starts with SIGINT ignored, and trio then takes no interrupt)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_lets_the_finish_under_way_end(tmp_path: Path, sigint_raises: None) -> None:
    async def at_link() -> None:
        signal.raise_signal(signal.SIGINT)  # arrives in the middle of the finish's code

    driver = PausingAtLayerLink(FilesystemDriver(str(tmp_path / "store")), at_link)
    importer = _importer(tmp_path, driver)
    with pytest.raises(BaseException) as raised:
        trio.run(importer.run, "v1")
    interrupt = raised.value
    while isinstance(interrupt, BaseExceptionGroup):  # as the nurseries on the way raise it
        [interrupt] = interrupt.exceptions
    assert isinstance(interrupt, KeyboardInterrupt)
    _finished_whole(tmp_path / "store", driver.linked)


@pytest.mark.parametrize("point", ["finish:before-link", "finish:before-cleanup"])
def test_the_next_import_removes_the_upload_a_kill_left(tmp_path: Path, point: str) -> None:
    layout = write_oci_layout(make_image(seed=4, layers=2), tmp_path / "in", "v1")
    store, source = tmp_path / "store", f"oci:{layout}:v1"
    one_at_a_time = ("--jobs", "1")  # the kill leaves the moved blob's upload alone
    killed = layerfs(
        "import", *one_at_a_time, source, str(store), f"{REPOSITORY}:v1", env={CRASH_AT: point}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [(label, _)] = uploads_named(store, REPOSITORY)  # the upload of the blob moved
    moved = Digest.parse(label.removeprefix("import "))
    assert (store / paths.blob_data(moved).lstrip("/")).is_file()
    result = layerfs("import", source, str(store), f"{REPOSITORY}:v1")
    assert result.returncode == 0, result.stderr
    assert uploads_named(store, REPOSITORY) == []
    assert (store / paths.layer_link(REPOSITORY, moved).lstrip("/")).is_file()
    fsck = layerfs("fsck", str(store))
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
