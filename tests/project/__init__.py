"""Tests of the project itself: its README, its design page, its layers."""
