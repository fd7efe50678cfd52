"""Configuration: the in-memory snapshot the request path reads (`registry`), provider credentials at rest
(`secrets`), per-alias request shaping (`shaping`), and configuration as code (`configfile` for
`importconfig`/`exportconfig`, `quickstart` for providers found in the environment)."""
