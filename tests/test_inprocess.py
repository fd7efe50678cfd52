"""The in-process harness (tests/inprocess.py) ends a test with every exchange it served in the ledger, so no row
is written late into the next test's database."""

from __future__ import annotations

from tests.conftest import add_route
from tests.fakes.script import Reply
from tests.inprocess import InProcessProxy, passwordless_alice  # noqa: F401  (no password hashing here)
from usage.models import LedgerEntry


def test_an_exchange_still_running_when_the_harness_stops_is_in_the_ledger(alice_key):
    proxy = InProcessProxy()
    with proxy.upstream("openai-chat") as fake:
        add_route("up", "openai-chat", fake.url + "/v1", alias="m", model="real-model")
        fake.script(Reply(text="held open", chunks=4, stall_after=1))
        proxy.sync()
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
        with proxy.http.stream(
            "POST", "/v1/chat/completions", headers={"authorization": f"Bearer {alice_key}"}, json=body
        ) as response:
            assert response.status_code == 200
            assert next(response.iter_lines()).startswith("data:")
            proxy.stop()  # the test ends while the answer is still streaming
            assert list(LedgerEntry.objects.values_list("upstream_model", "outcome")) == [("real-model", "cancelled")]
