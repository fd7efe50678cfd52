"""A graceful stop of the server loses nothing it was keeping in memory for the database."""

from __future__ import annotations

import httpx
import pytest

from routing.models import ProxyKey
from tests.liveserver import ProxyServer

pytestmark = pytest.mark.e2e


def test_key_last_use_is_written_when_the_server_stops(transactional_db, alice):
    key, plaintext = ProxyKey.issue(alice, label="ci")
    server = ProxyServer()  # a server of its own: this test stops it
    try:
        server.sync()
        response = httpx.get(server.url + "/v1/models", headers={"authorization": f"Bearer {plaintext}"})
        assert response.status_code == 200
        key.refresh_from_db()
        assert key.last_used_at is None  # kept in memory, written in batches
    finally:
        server.stop()  # SIGTERM: daphne runs its shutdown triggers
    key.refresh_from_db()
    assert key.last_used_at is not None, server.output()
