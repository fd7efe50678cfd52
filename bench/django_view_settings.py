"""Project settings with the benchmark's Django-view URLconf (see bench/django_view.py)."""

from llmproxy_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.django_view"
