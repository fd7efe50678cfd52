"""What one person may do, as /me/ shows it: the models their access lists allow, their budgets with what is left
this period, and their rate limits. Built from the same rules the hot path enforces (`routing.access.policy`)
and the current configuration (synchronous ORM).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from routing.access.budgets import ZERO, current_spend, period_spend
from routing.access.policy import (
    PERIOD_WORDS,
    Budget,
    KeyRules,
    LoadedRules,
    RateLimit,
    Scope,
    access_names,
    budget_of,
    group_members,
    key_name,
    load_rules,
    period_bounds,
    user_rules,
)
from routing.models import GroupPolicy, KeyPolicy, ModelAlias, ProxyKey, Upstream, UserPolicy
from usage.queries import key_label

GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class ModelChoice:
    name: str
    pattern: bool  # a glob: any name it matches


@dataclass(frozen=True)
class ModelList:
    """The models some of a person's keys may use: `title` says which keys, `limited_by` which lists restrict."""

    title: str
    limited_by: tuple[str, ...]
    aliases: tuple[ModelChoice, ...]
    direct: tuple[ModelChoice, ...]  # upstream/model names reaching an upstream's models without an alias


# A budget is "nearly spent" from this share of it on (the dashboard's Budgets panel and /me/ mark it).
WARN_SHARE = Decimal("0.8")


class BudgetState:
    OK = "ok"
    WARN = "warn"  # over WARN_SHARE
    EXHAUSTED = "exhausted"  # requests are refused until it resets


@dataclass(frozen=True)
class BudgetRow:
    who: str
    period: str  # "this month", …
    amount: Decimal
    spent: Decimal
    resets_at: datetime | None
    # Where it applies, for the dashboard: a key ("key"), user or group, its id and its name there.
    scope: str = ""
    subject_id: int = 0
    name: str = ""
    starts_at: datetime | None = None

    @property
    def left(self) -> Decimal:
        return max(ZERO, self.amount - self.spent)

    @property
    def share(self) -> float:
        """Spent over the budget (above 1 when overshot); a budget of 0 is all used."""
        return float(self.spent / self.amount) if self.amount > 0 else math.inf

    @property
    def percent_spent(self) -> int:
        """The share in whole percent, above 100 when overshot (what the dashboard says)."""
        return 100 if self.amount <= 0 else int(self.spent * 100 / self.amount)

    @property
    def percent_used(self) -> int:
        """The share in whole percent, at most 100 (how full a meter is drawn)."""
        return min(100, self.percent_spent)

    @property
    def state(self) -> str:
        """Exhausted as the hot path refuses (`SpendBook.check`: spent has reached the budget)."""
        if self.spent >= self.amount:
            return BudgetState.EXHAUSTED
        if self.spent >= self.amount * WARN_SHARE:
            return BudgetState.WARN
        return BudgetState.OK


@dataclass(frozen=True)
class Overview:
    models: tuple[ModelList, ...]
    budgets: tuple[BudgetRow, ...]
    limits: tuple[RateLimit, ...]
    example_model: str | None  # an exact alias the person may use, for the set-up snippets


def _glob(name: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(name), re.IGNORECASE)


def usable(
    rules: KeyRules, aliases: Sequence[str], upstreams: Sequence[str]
) -> tuple[list[ModelChoice], list[ModelChoice]]:
    """The aliases (in resolution order) and direct upstream names `rules` allow. A pattern alias the lists allow
    whole is shown as the pattern; otherwise the list entries it serves are shown (names, or narrower patterns)."""
    names: list[ModelChoice] = []
    seen: set[str] = set()

    def add(name: str) -> None:
        if name.lower() not in seen:
            seen.add(name.lower())
            names.append(ModelChoice(name, bool(GLOB.search(name))))

    def served(pattern: str) -> None:
        if rules.allows_model([pattern]):
            add(pattern)
            return
        regex = _glob(pattern)
        for level in rules.access:
            for entry in level.entries:
                if regex.fullmatch(entry) and rules.allows_model(access_names(entry, pattern)):
                    add(entry)

    for alias in aliases:
        if GLOB.search(alias):
            served(alias)
        elif rules.allows_model(access_names(alias, alias)):
            add(alias)
    alias_names = list(names)
    names.clear()
    for upstream in upstreams:
        served(f"{upstream}/*")
    return alias_names, list(names)


def _budget_row(budget: Budget, loaded: LoadedRules, now: datetime) -> BudgetRow:
    if budget.scope == Scope.KEY:
        spent = period_spend(budget.period, key_id=budget.subject_id)
    elif budget.scope == Scope.USER:
        spent = period_spend(budget.period, user_ids=[budget.subject_id])
    else:
        spent = period_spend(budget.period, user_ids=loaded.group_members.get(budget.subject_id, ()))
    _, end = period_bounds(budget.period, now)
    return BudgetRow(budget.who, PERIOD_WORDS.get(budget.period, budget.period), budget.amount, spent, end)


def overview(user_id: int, username: str, keys: Sequence[ProxyKey], now: datetime) -> Overview:
    """What the person may use through their usable `keys` (and would through a new key: the user's and groups'
    rules alone)."""
    base, loaded = user_rules(user_id, username)
    per_key = load_rules(keys).by_key if keys else {}
    aliases = list(
        ModelAlias.objects.filter(enabled=True, upstream__enabled=True)
        .order_by("priority", "id")
        .values_list("name", flat=True)
    )
    upstreams = list(
        Upstream.objects.filter(enabled=True, allow_direct_models=True).order_by("name").values_list("name", flat=True)
    )

    def listing(title: str, rules: KeyRules) -> ModelList:
        alias_names, direct = usable(rules, aliases, upstreams)
        return ModelList(title, tuple(level.who for level in rules.access), tuple(alias_names), tuple(direct))

    signature = tuple(level.entries for level in base.access)
    models = [listing("Your keys" if keys else "A key of yours", base)]
    budgets = [_budget_row(b, loaded, now) for b in base.budgets]
    limits = list(base.limits)
    for key in keys:
        rules = per_key.get(key.pk)
        if rules is None:
            continue
        if tuple(level.entries for level in rules.access) != signature:
            models.append(listing(f"Key {key_name(key).removeprefix('key ')}", rules))
        budgets += [_budget_row(b, loaded, now) for b in rules.budgets if b.scope == Scope.KEY]
        limits += [limit for limit in rules.limits if limit.scope == Scope.KEY]
    if len(models) > 1:
        title = "A new key" if len(models) - 1 == len(keys) else "Your other keys"
        models[0] = ModelList(title, models[0].limited_by, models[0].aliases, models[0].direct)
    example = next((m.name for m in models[0].aliases if not m.pattern), None)
    return Overview(tuple(models), tuple(budgets), tuple(limits), example)


def every_budget(now: datetime) -> list[BudgetRow]:
    """Every budget set on a key (not revoked), a user or a group, with what was spent in its current period
    (counted as the spend book counts it, `current_spend`): the dashboard's Budgets panel. Four queries, plus one
    per budget period in use."""
    found: list[tuple[Budget, str]] = []
    keys = KeyPolicy.objects.filter(budget_usd__isnull=False, key__revoked_at__isnull=True).select_related(
        "key", "key__user"
    )
    for key_policy in keys:
        key = key_policy.key
        budget = budget_of(Scope.KEY, key.pk, key_name(key), key_policy)
        if budget:
            found.append((budget, key_label(key.prefix, key.label, key.user.get_username())))
    users = UserPolicy.objects.filter(budget_usd__isnull=False).select_related("user")
    for user_policy in users:
        username = user_policy.user.get_username()
        budget = budget_of(Scope.USER, user_policy.user_id, f"user '{username}'", user_policy)
        if budget:
            found.append((budget, username))
    group_ids: list[int] = []
    for policy in GroupPolicy.objects.filter(budget_usd__isnull=False).select_related("group"):
        budget = budget_of(Scope.GROUP, policy.group_id, f"group '{policy.group.name}'", policy)
        if budget:
            group_ids.append(policy.group_id)
            found.append((budget, policy.group.name))
    spent = current_spend([b for b, _ in found], group_members(group_ids), now)
    rows = []
    for budget, name in found:
        start, end = period_bounds(budget.period, now)
        rows.append(
            BudgetRow(
                budget.who,
                PERIOD_WORDS.get(budget.period, budget.period),
                budget.amount,
                spent[(budget.scope, budget.subject_id, budget.period)],
                end,
                scope=budget.scope,
                subject_id=budget.subject_id,
                name=name,
                starts_at=start,
            )
        )
    return rows
