"""Tests of passes: whole-store passes against models, without docker-registry."""
