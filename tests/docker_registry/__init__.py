"""Tests of against docker-registry: stores it writes, what it serves."""
