"""Upstream I/O: each format's endpoint URLs and auth headers, and the pooled HTTP client (no ORM here)."""
