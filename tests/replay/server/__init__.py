"""Tests of the simulated exchange (replay.server)."""
