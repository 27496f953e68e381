"""Content digests ``<algorithm>:<hex>`` as the registry spells them."""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from .errors import InvalidDigestError, UnsupportedAlgorithmError

# algorithm -> length of its lowercase hex encoding
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha384": 96, "sha512": 128}
CANONICAL = "sha256"

_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_HEX_RE = re.compile(r"[0-9a-f]+")
# the digest nearly every manifest and link holds, taken in one match (a pass parses
# hundreds of thousands); anything else takes the general way
SHA256_TEXT = re.compile(r"sha256:[0-9a-f]{64}")


def check_algorithm(algorithm: str) -> str:
    if algorithm not in ALGORITHMS:
        raise UnsupportedAlgorithmError(f"unsupported digest algorithm {algorithm!r}")
    return algorithm


class Digest(NamedTuple):
    """An algorithm and its lowercase hex. A tuple, not a dataclass: a pass over a
    big store makes millions, and a tuple is made, hashed and compared in C."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and validate; refuse unknown algorithms and wrong hex lengths."""
        if not isinstance(text, str):
            raise InvalidDigestError(f"digest must be text, got {type(text).__name__}")
        if SHA256_TEXT.fullmatch(text):
            return cls(CANONICAL, text[7:])
        m = _DIGEST_RE.fullmatch(text)
        if not m:
            raise InvalidDigestError(f"invalid digest {text!r}: want <algorithm>:<hex>")
        algorithm, hexpart = m.groups()
        if algorithm not in ALGORITHMS:
            raise UnsupportedAlgorithmError(
                f"unsupported digest algorithm {algorithm!r} in {text!r}"
                f" (known: {', '.join(ALGORITHMS)})"
            )
        return cls.from_parts(algorithm, hexpart)

    @classmethod
    def from_parts(cls, algorithm: str, hexpart: str) -> Digest:
        check_algorithm(algorithm)
        want = ALGORITHMS[algorithm]
        if len(hexpart) != want or not _HEX_RE.fullmatch(hexpart):
            raise InvalidDigestError(
                f"invalid {algorithm} digest {algorithm}:{hexpart}:"
                f" want {want} lowercase hex characters"
            )
        return cls(algorithm, hexpart)

    @classmethod
    def of(cls, data: bytes, algorithm: str = CANONICAL) -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


EMPTY_SHA256 = Digest.of(b"")
