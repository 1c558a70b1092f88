"""Tests of the historical edge (replay)."""
