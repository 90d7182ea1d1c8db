"""Rendering of scored results (leaderboards)."""
