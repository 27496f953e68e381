"""Tests of drivers: the conformance suite and what each driver alone does."""
