"""Pure translation between LLM API dialects: no Django, no I/O, standard library only."""
