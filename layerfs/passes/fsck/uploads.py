"""fsck's upload checks: data, start time and every stored hash state."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio

from ...drivers import FileInfo, PathNotFoundError, UnsafeEntryError
from ...drivers.base import HASH_CHUNK
from ...storage import paths, walk
from ...storage.hashstate import HashStateError, ResumableSha256
from ...storage.uploads import parse_started_at
from .base import SMALL_FILE, CheckedUpload, Checks, batches


class UploadChecks(Checks):
    async def _list_uploads(self) -> list[CheckedUpload]:
        found = []
        # odd repository directories are reported with the rest
        for name in await self.registry.repositories(walk.log_odd, self.snapshot):
            ids = await walk.upload_ids(self.snapshot, name, self._odd)
            infos = await self.driver.stat_many([paths.upload_data(name, i) for i in ids])
            for upload_id, info in zip(ids, infos, strict=True):
                data = paths.upload_data(name, upload_id)
                readable = data not in self.pending  # else reading would complete it
                if not readable:
                    self._normal("write-in-progress")
                if isinstance(info, UnsafeEntryError):
                    await self._unsafe(info)
                    continue
                size, has_data = (info.size, True) if isinstance(info, FileInfo) else (0, False)
                states = await self._hash_states(name, upload_id)
                found.append(CheckedUpload(name, upload_id, size, states, has_data, readable))
        return found

    async def _read_uploads_ahead(self, uploads: list[CheckedUpload]) -> None:
        """The start times and hash states of these uploads, and the data of the small
        ones with states (what their checks read)."""
        wanted = [paths.upload_started_at(u.repository, u.id) for u in uploads]
        wanted += [path for u in uploads if u.readable for path in u.states.values()]
        await self.ahead.fetch(wanted)
        small = [u for u in uploads if u.states and u.readable and 0 < u.size <= SMALL_FILE]
        for batch in batches(small):
            await self.ahead.fetch(paths.upload_data(u.repository, u.id) for u in batch)

    async def _check_upload(self, limiter: trio.CapacityLimiter, upload: CheckedUpload) -> None:
        self.report.uploads += 1
        where = paths.upload_dir(upload.repository, upload.id)
        try:
            started = await self.ahead.get(paths.upload_started_at(upload.repository, upload.id))
            parse_started_at(started)
        except UnsafeEntryError as exc:
            await self._unsafe(exc)
            return
        except PathNotFoundError:
            if not upload.has_data:  # what the registry's cancel (DELETE) leaves
                self._normal("cancelled-upload")
                return
            await self._found("upload-no-startedat", where, "upload without startedat", where)
            return
        except (ValueError, UnicodeDecodeError):
            await self._found("upload-no-startedat", where, "startedat is not a time", where)
            return
        if not upload.has_data and await self._finish_interrupted(upload):
            return
        if upload.states and not upload.readable:
            await self._check_states_unread(upload)
        elif upload.states:
            async with limiter:
                await self._check_states(upload)

    async def _finish_interrupted(self, upload: CheckedUpload) -> bool:
        """Report (and with a repair, complete) a finish cut short between its move
        into ``blobs/`` and its link."""
        uploads = self.registry.repository(upload.repository).uploads
        digest = await uploads.interrupted_finish(upload.id)
        if digest is None:
            return False

        async def complete() -> None:
            await uploads.complete_interrupted_finish(upload.id, digest)

        where = paths.upload_dir(upload.repository, upload.id)
        detail = (
            f"a finish moved this upload into blob {digest} and stopped before linking it"
            f" into {upload.repository}; a repair links it and removes the upload"
        )
        await self._found("upload-finish-interrupted", where, detail, where, complete)
        return True

    async def _hash_states(self, name: str, upload_id: str) -> dict[int, str]:
        async def odd(path: str, why: str) -> None:
            await self._found("upload-bad-hashstate", path, why, path)

        return await walk.hash_states(self.snapshot, name, upload_id, odd)

    async def _check_states(self, upload: CheckedUpload) -> None:
        """Hash the data once, comparing each stored state at its offset."""
        hasher = ResumableSha256()
        pending = sorted(upload.states.items())
        data = paths.upload_data(upload.repository, upload.id)
        try:
            async for chunk in self._chunks(data):
                self.progress(len(chunk))
                view = memoryview(chunk)
                while view:
                    offset = pending[0][0] if pending else hasher.size + len(view)
                    step = max(0, min(len(view), offset - hasher.size))
                    if step:
                        await trio.to_thread.run_sync(hasher.update, view[:step])
                        view = view[step:]
                    while pending and pending[0][0] == hasher.size:
                        await self._compare_state(hasher, *pending.pop(0))
        except PathNotFoundError:
            pass
        except UnsafeEntryError as exc:
            await self._unsafe(exc)
            return
        while pending and pending[0][0] == hasher.size:
            await self._compare_state(hasher, *pending.pop(0))
        for _ in pending:
            self._normal("state-beyond-data")

    async def _chunks(self, data: str) -> AsyncIterator[bytes]:
        """The upload's bytes: as read ahead (a small upload), or streamed."""
        ahead = self.ahead.peek(data)
        if ahead is not None:
            await self.ahead.get(data)
            yield ahead
            return
        async for chunk in self.driver.read_all(data, chunk=HASH_CHUNK):
            yield chunk

    async def _check_states_unread(self, upload: CheckedUpload) -> None:
        """The states of data that cannot be read without changing the store (an S3
        multipart upload not completed): each must parse, name its own offset and lie
        within the data; whether it matches the bytes stays unknown."""
        for offset, path in sorted(upload.states.items()):
            if offset > upload.size:
                self._normal("state-beyond-data")
            else:
                await self._compare_state(None, offset, path)

    async def _compare_state(self, hasher: ResumableSha256 | None, offset: int, path: str) -> None:
        """A stored state against the hash of the first ``offset`` bytes (None: the
        bytes are not known, so only the state's own offset is checked)."""
        try:
            stored = ResumableSha256.unmarshal(await self.ahead.get(path))
        except UnsafeEntryError as exc:
            await self._unsafe(exc)
            return
        except (HashStateError, PathNotFoundError) as exc:
            await self._found("upload-bad-hashstate", path, f"unreadable state: {exc}", path)
            return
        if stored.size != offset:
            detail = f"state of {stored.size} bytes stored for offset {offset}"
            await self._found("upload-bad-hashstate", path, detail, path)
        elif hasher is not None and stored.marshal() != hasher.marshal():
            await self._found(
                "upload-bad-hashstate",
                path,
                f"state does not match the first {offset} bytes of the data",
                path,
            )
