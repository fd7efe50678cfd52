"""Sign-in throttling for the admin and the people's pages (`/accounts/login/`, which `/me/` uses).

After SIGNIN_MAX_FAILURES failed attempts for one username, or from one client address, within
SIGNIN_LOCKOUT_SECONDS, further attempts are refused (the right password included) until the window ends:
password guessing gets a handful of tries per window, not thousands. The counts live in Django's cache: in
Redis when REDIS_URL is set (shared by every worker), else in each process's memory (each worker counts on its
own, documented in docs/security.md).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest


def _counters(request: HttpRequest | None, username: str) -> list[str]:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    return [f"signin-failures:user:{username.strip().lower()}", f"signin-failures:address:{address}"]


class ThrottledSignIn:
    """Mixed into Django's authentication forms: refuses while locked out, counts each failure."""

    request: HttpRequest | None

    def clean(self) -> dict[str, Any]:
        username = str(self.data.get("username", ""))  # type: ignore[attr-defined]
        counters = _counters(self.request, username)
        limit: int = settings.SIGNIN_MAX_FAILURES
        if any(count >= limit for count in cache.get_many(counters).values()):
            minutes = max(1, round(settings.SIGNIN_LOCKOUT_SECONDS / 60))
            raise ValidationError(f"Too many failed sign-ins. Try again in {minutes} minutes.", code="throttled")
        try:
            cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]
        except ValidationError:
            for counter in counters:
                # The window starts with the first failure (add is a no-op when the counter exists).
                cache.add(counter, 0, timeout=settings.SIGNIN_LOCKOUT_SECONDS)
                try:
                    cache.incr(counter)
                except ValueError:  # expired between add and incr
                    cache.set(counter, 1, timeout=settings.SIGNIN_LOCKOUT_SECONDS)
            raise
        cache.delete(counters[0])  # a success forgives the username's failures, not the address's
        return cleaned


class SignInForm(ThrottledSignIn, AuthenticationForm):
    pass


class AdminSignInForm(ThrottledSignIn, AdminAuthenticationForm):
    pass
