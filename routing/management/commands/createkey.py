from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from routing.models import ProxyKey


class Command(BaseCommand):
    help = "Create a proxy key for a user and print it (once: only its hash is stored)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--user", required=True, help="Username of the key's owner")
        parser.add_argument("--label", default="", help="What the key is for, shown in the admin")
        parser.add_argument("--create-user", action="store_true", help="Create the user if it does not exist")

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        username = options["user"]
        try:
            user = users.objects.get(username=username)
        except users.DoesNotExist:
            if not options["create_user"]:
                raise CommandError(f"no user {username!r} (add --create-user to create one)") from None
            user = users.objects.create_user(username=username)
            self.stderr.write(f"created user {username}")
        key, plaintext = ProxyKey.issue(user, label=options["label"])
        self.stderr.write(f"key {key.prefix}… for {username}; store it now, it is not shown again:")
        self.stdout.write(plaintext)
