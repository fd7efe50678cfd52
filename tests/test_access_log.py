"""The server's access log names paths, never query strings: a Gemini client may send its key as `?key=`."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_a_key_in_the_query_string_stays_out_of_the_access_log(proxy, alice_key):
    response = httpx.get(proxy.url + f"/v1beta/models?key={alice_key}", timeout=10)
    assert response.status_code == 200  # the key was good: the listing came back
    deadline = time.monotonic() + 5
    while "/v1beta/models" not in proxy.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = proxy.output()
    assert '"GET /v1beta/models" 200' in log
    assert alice_key not in log and "key=" not in log
