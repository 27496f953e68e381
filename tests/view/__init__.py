"""Tests of the view without a kernel: Operations called directly."""
