"""Secrets as the database itself holds them: read with raw SQL, not through the models."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection

from routing.config.secrets import decrypt
from routing.models import ProxyKey, Upstream

pytestmark = pytest.mark.django_db


def raw_row(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return str(cursor.fetchone()[0])


def test_a_stored_provider_key_is_encrypted_in_its_row():
    upstream = Upstream(name="up", format="openai-chat", base_url="https://api.openai.com/v1")
    upstream.set_api_key("sk-provider-plaintext-123")
    upstream.save()
    stored = raw_row(Upstream._meta.db_table, "api_key_encrypted", upstream.pk)
    assert "sk-provider-plaintext-123" not in stored
    assert decrypt(stored) == "sk-provider-plaintext-123"


def test_a_proxy_key_is_stored_only_as_its_hash():
    key, plaintext = ProxyKey.issue(User.objects.create_user("alice"), label="laptop")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ProxyKey._meta.db_table} WHERE id = %s", [key.pk])
        row = cursor.fetchone()
    assert all(plaintext not in str(value) for value in row)
    assert plaintext.startswith(key.prefix)  # only the display prefix is kept in clear
