"""Tests of hostile input: stores, layouts and archives made to escape or exhaust."""
