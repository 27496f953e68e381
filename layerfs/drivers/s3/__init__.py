"""The S3 driver, one module per mechanism: ``driver`` (the StorageDriver: objects,
pending writes, moves, deletes), ``requests`` (the client, its threads and deadlines,
its errors), ``listing`` (directories as key prefixes), ``multipart`` (the writer),
``reader`` (ranged reads ahead) and ``smallobjects`` (revalidated small objects)."""

from .driver import COPY_SINGLE_MAX, S3Driver
from .multipart import DEFAULT_PART, MIN_PART, PartBody
from .smallobjects import SMALL_OBJECT, SMALL_OBJECTS_TOTAL, SmallObjects

__all__ = [
    "COPY_SINGLE_MAX",
    "DEFAULT_PART",
    "MIN_PART",
    "SMALL_OBJECT",
    "SMALL_OBJECTS_TOTAL",
    "PartBody",
    "S3Driver",
    "SmallObjects",
]
