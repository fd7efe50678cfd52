"""The server's access log names paths, never query strings: a Gemini client may send its key as `?key=`."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.liveserver import ProxyServer

pytestmark = pytest.mark.e2e


def test_a_key_in_the_query_string_stays_out_of_the_access_log(proxy, alice_key):
    proxy.sync()  # the server knows the new key
    response = httpx.get(proxy.url + f"/v1beta/models?key={alice_key}", timeout=10)
    assert response.status_code == 200  # the key was good: the listing came back
    deadline = time.monotonic() + 5
    while "/v1beta/models" not in proxy.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = proxy.output()
    assert '"GET /v1beta/models" 200' in log
    assert alice_key not in log and "key=" not in log


@pytest.mark.parametrize(
    ("trusted", "logged_as"),
    [("", "127.0.0.1"), ("10.9.9.9", "127.0.0.1"), ("127.0.0.1", "203.0.113.9")],
    ids=["no trusted proxy", "another proxy", "this proxy"],
)
def test_forwarded_addresses_count_only_from_a_trusted_proxy(transactional_db, trusted, logged_as):
    """The access log, and the loopback rule of /metrics, see the address a trusted reverse proxy forwards;
    from anyone else X-Forwarded-For is ignored."""
    with ProxyServer({"TRUSTED_PROXIES": trusted, "METRICS_TOKEN": ""}) as server:
        forwarded = {"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}
        scrape = httpx.get(server.url + "/metrics", headers=forwarded, timeout=10)
        assert scrape.status_code == (403 if logged_as == "203.0.113.9" else 200)
        deadline = time.monotonic() + 5
        while '"GET /metrics"' not in server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        (line,) = [line for line in server.output().splitlines() if '"GET /metrics"' in line]
        assert line.startswith(f"{logged_as}:")
