"""Tests of storage: the registry's model over a driver."""
