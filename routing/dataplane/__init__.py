"""The data plane: every request a client sends to an LLM API, over HTTP or the Responses WebSocket.

No module here touches the ORM: what a request needs is in the per-process snapshot (routing.config.registry,
routing.runtime.live), and database work goes through the database thread. `pipeline` owns an exchange from start to
ledger row; `relay` the upstream's answer; `sinks` the transport.
"""
