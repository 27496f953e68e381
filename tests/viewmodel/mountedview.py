"""A mount held open across Hypothesis's synchronous rules: a trio loop in a
thread, and one mount kept open on it by a task of its own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import trio

from layerfs.drivers import (
    StorageDriver,
)

from ..fsops import Clock, Kernel, mounted


class TrioThread:
    """A trio loop in a thread, so that Hypothesis's synchronous rules can await."""

    def __init__(self) -> None:
        ready = threading.Event()
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None

        async def serve() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            ready.set()
            await self._stop.wait()

        self.thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
        self.thread.start()
        ready.wait()

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def close(self) -> None:
        assert self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self.thread.join(10)


class MountedView:
    """One mount kept open across rules by a task of its own."""

    def __init__(self, loop: TrioThread, driver: StorageDriver, clock: Clock | None = None) -> None:
        self.loop = loop
        self.kernel: Kernel | None = None
        self._unmount = trio.Event()
        self._done = trio.Event()
        self._started = trio.Event()

        async def hold() -> None:
            try:
                async with mounted(driver, clock=clock or Clock()) as kernel:
                    # one request at a time: a closed writer's release is never late
                    kernel.ops.state.uploads.release_grace = 0.0
                    self.kernel = kernel
                    self._started.set()
                    await self._unmount.wait()
            finally:
                self._done.set()

        async def start() -> None:
            trio.lowlevel.spawn_system_task(hold)
            with trio.fail_after(5):
                await self._started.wait()

        loop.run(start)

    def unmount(self) -> None:
        async def stop() -> None:
            self._unmount.set()
            with trio.fail_after(10):
                await self._done.wait()

        self.loop.run(stop)
