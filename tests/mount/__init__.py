"""Tests of kernel FUSE mounts driven with real tools, and crashes."""
