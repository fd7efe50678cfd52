"""Fake upstream LLM providers speaking each provider's wire format, for end-to-end tests and the benchmark.

Kept free of imports so `python -m tests.fakes.server` does not load the server module twice.
"""
