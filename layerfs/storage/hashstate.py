"""A SHA-256 whose running state can be saved and restored in Go's format.

The registry stores an upload's hash state as Go's ``crypto/sha256``
``MarshalBinary`` output (108 bytes) at ``hashstates/sha256/<offset>`` and resumes
from it. hashlib hides its state, so this drives OpenSSL's low-level
``SHA256_Init/Update/Final`` through ctypes (same speed; the call releases the GIL)
and converts its ``SHA256_CTX`` to and from Go's layout:

    "sha\\x03" | h[0..7] big-endian uint32 | pending block, zero padded to 64 | length uint64 BE
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct

from .errors import RegistryError

GO_MAGIC = b"sha\x03"
GO_STATE_SIZE = len(GO_MAGIC) + 8 * 4 + 64 + 8  # 108
BLOCK = 64
DIGEST_SIZE = 32


class HashStateError(RegistryError):
    """A stored hash state that is not a Go sha256 state."""


class _SHA256_CTX(ctypes.Structure):
    _fields_ = [  # noqa: RUF012 - ctypes reads this class attribute
        ("h", ctypes.c_uint32 * 8),
        ("Nl", ctypes.c_uint32),
        ("Nh", ctypes.c_uint32),
        ("data", ctypes.c_uint8 * BLOCK),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    ]


def _load_libcrypto() -> ctypes.CDLL:
    for name in (ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if hasattr(lib, "SHA256_Init"):
            break
    else:  # pragma: no cover - every Debian 12 machine has libssl3
        raise ImportError("OpenSSL libcrypto with SHA256_Init not found")
    ctx_p = ctypes.POINTER(_SHA256_CTX)
    lib.SHA256_Init.argtypes = [ctx_p]
    lib.SHA256_Update.argtypes = [ctx_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.SHA256_Final.argtypes = [ctypes.c_char_p, ctx_p]
    for fn in (lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final):
        fn.restype = ctypes.c_int
    return lib


_lib = _load_libcrypto()


class ResumableSha256:
    """hashlib-like SHA-256 with :meth:`marshal` / :meth:`unmarshal` in Go's format."""

    name = "sha256"

    def __init__(self, data: bytes | bytearray | memoryview = b"") -> None:
        self._ctx = _SHA256_CTX()
        _lib.SHA256_Init(ctypes.byref(self._ctx))
        if data:
            self.update(data)

    @property
    def size(self) -> int:
        """Bytes hashed so far."""
        return ((self._ctx.Nh << 32) | self._ctx.Nl) >> 3

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Hash ``data``. Releases the GIL, so large buffers may go to a worker thread."""
        if isinstance(data, bytes):
            buf: object = data
        else:
            view = memoryview(data)
            if view.readonly or not view.c_contiguous:
                buf = view.tobytes()
            else:
                buf = (ctypes.c_char * view.nbytes).from_buffer(view.cast("B"))
        n = len(buf) if isinstance(buf, bytes) else ctypes.sizeof(buf)  # type: ignore[arg-type]
        if n:
            _lib.SHA256_Update(ctypes.byref(self._ctx), buf, n)

    def copy(self) -> ResumableSha256:
        other = ResumableSha256.__new__(ResumableSha256)
        other._ctx = _SHA256_CTX()
        ctypes.pointer(other._ctx)[0] = self._ctx
        return other

    def digest(self) -> bytes:
        out = ctypes.create_string_buffer(DIGEST_SIZE)
        ctx = self.copy()._ctx
        _lib.SHA256_Final(out, ctypes.byref(ctx))
        return out.raw

    def hexdigest(self) -> str:
        return self.digest().hex()

    def marshal(self) -> bytes:
        """The state as Go's ``sha256.digest.MarshalBinary`` would write it."""
        ctx = self._ctx
        pending = bytes(ctx.data)[: ctx.num]
        return b"".join(
            (
                GO_MAGIC,
                struct.pack(">8I", *ctx.h),
                pending.ljust(BLOCK, b"\0"),
                struct.pack(">Q", self.size),
            )
        )

    @classmethod
    def unmarshal(cls, state: bytes) -> ResumableSha256:
        """Rebuild a hasher from Go's binary state; refuse anything else."""
        if len(state) != GO_STATE_SIZE or not state.startswith(GO_MAGIC):
            raise HashStateError(
                f"not a Go sha256 hash state ({len(state)} bytes,"
                f" magic {state[:4]!r}; want {GO_STATE_SIZE} bytes starting {GO_MAGIC!r})"
            )
        h = struct.unpack(">8I", state[4:36])
        pending_block = state[36:100]
        (length,) = struct.unpack(">Q", state[100:108])
        if length >= 1 << 61:
            raise HashStateError(f"Go sha256 hash state claims {length} bytes: too many")
        num = length % BLOCK
        if any(pending_block[num:]):
            raise HashStateError("Go sha256 hash state has bytes past its pending length")
        self = cls.__new__(cls)
        self._ctx = _SHA256_CTX()
        for i, word in enumerate(h):
            self._ctx.h[i] = word
        bits = length * 8
        self._ctx.Nl = bits & 0xFFFFFFFF
        self._ctx.Nh = (bits >> 32) & 0xFFFFFFFF
        ctypes.memmove(self._ctx.data, pending_block, num)
        self._ctx.num = num
        self._ctx.md_len = DIGEST_SIZE
        return self
