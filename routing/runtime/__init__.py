"""Per-process live state: the database thread, the current configuration snapshot and its background jobs,
and the per-key store of Responses answers shared by every worker."""
