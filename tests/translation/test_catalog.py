"""Reading a provider's model list (the upstream check's): each format's page shape and how it says there is more."""

from __future__ import annotations

from translation.catalog import model_entry, model_list, model_list_query, read_model_list
from translation.dialect import Dialect

# The dialects whose providers' model lists the upstream check reads (a cloud's runtime endpoint lists none).
LISTED = (Dialect.ANTHROPIC, Dialect.OPENAI_CHAT, Dialect.OPENAI_RESPONSES, Dialect.GEMINI)


def test_each_format_reads_its_own_listing_back():
    for dialect in LISTED:
        listing = model_list(dialect, [model_entry(dialect, name, "me") for name in ("a", "b/c")])
        assert read_model_list(dialect, listing) == (["a", "b/c"], None), dialect


def test_the_next_page_is_asked_the_way_each_provider_pages():
    assert model_list_query(Dialect.ANTHROPIC) == {"limit": "1000"}
    assert model_list_query(Dialect.GEMINI) == {"pageSize": "1000"}
    assert model_list_query(Dialect.OPENAI_CHAT) == {}
    page = {"data": [{"id": "claude-x"}], "has_more": True, "last_id": "claude-x"}
    assert read_model_list(Dialect.ANTHROPIC, page) == (["claude-x"], {"limit": "1000", "after_id": "claude-x"})
    assert read_model_list(Dialect.ANTHROPIC, {**page, "last_id": None})[1] is None  # nowhere to continue from
    assert read_model_list(Dialect.OPENAI_CHAT, page)[1] is None  # OpenAI lists come whole
    page = {"models": [{"name": "models/gemini-x"}], "nextPageToken": "t2"}
    assert read_model_list(Dialect.GEMINI, page) == (["gemini-x"], {"pageSize": "1000", "pageToken": "t2"})


def test_entries_without_an_id_and_answers_that_are_not_lists_read_as_nothing():
    body = {"data": [{"id": "ok"}, {"id": ""}, {"name": "x"}, "stray", None]}
    assert read_model_list(Dialect.OPENAI_CHAT, body) == (["ok"], None)
    assert read_model_list(Dialect.GEMINI, {"models": [{"displayName": "x"}, {"name": "models/y"}]}) == (["y"], None)
    for body in ([], "text", None, {"data": None}, {"models": None}):
        for dialect in LISTED:
            assert read_model_list(dialect, body) == ([], None)
