"""Edges: each module here translates one outside system into faxbridge's plain values."""
