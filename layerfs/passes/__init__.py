"""Whole-store passes over the registry's model (``storage``): fsck, gc, du, prune
and inspect, and what they share: one pass skeleton (``storepass``), listings read
ahead (``readahead``), blobs numbered (``blobtable``) and one manifest graph
(``graph``). They read and delete through ``storage``; nothing in ``storage`` needs
them.
"""
