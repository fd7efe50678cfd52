"""Per-key rules for the hot path: which models a key may use, which budgets and rate limits it counts against.

`load_rules()` reads the policies of keys, users and groups (`routing.models.KeyPolicy`, `UserPolicy`,
`GroupPolicy`) once per snapshot load and folds them into one immutable `KeyRules` per key, so a request only
looks at its key's record: no query, no walk over users and groups.

Model access: each level (key, user, the user's groups) may hold a list of alias names or glob patterns. An empty
list does not restrict. A request must be allowed by every level that restricts; the groups form one level, allowed
by any of the groups that have a list (groups without a list take no part). A name is compared as resolution
compares it (without Gemini's `models/`, Claude Code's `[1m]`, a date or `-latest` suffix), and also as the name of
the alias that serves it, case-insensitively.

Budgets: periods are UTC calendar periods (day, week from Monday, month) or `none` (all time).
"""

from __future__ import annotations

import fnmatch
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model

from routing.models import BudgetPeriod, GroupPolicy, KeyPolicy, ProxyKey, UserPolicy


class Scope:
    KEY = "key"
    USER = "user"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class ModelAccess:
    """One level's list: `who` names it in refusals ("key 'laptop'", "user 'alice'", "group 'research'")."""

    who: str
    entries: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]

    def allows(self, names: Iterable[str]) -> bool:
        return any(pattern.fullmatch(name) for name in names for pattern in self.patterns)


@dataclass(frozen=True, slots=True)
class Budget:
    scope: str
    subject_id: int
    who: str
    amount: Decimal
    period: str

    @property
    def subject(self) -> tuple[str, int]:
        return self.scope, self.subject_id


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The limits of one key or user; `None` is unlimited. Counters are named `scope:id` (routing.access.limits)."""

    scope: str
    subject_id: int
    who: str
    requests_per_minute: int | None
    tokens_per_minute: int | None
    concurrent_streams: int | None

    @property
    def counter(self) -> str:
        return f"{self.scope}:{self.subject_id}"


@dataclass(frozen=True, slots=True)
class KeyRules:
    access: tuple[ModelAccess, ...] = ()
    budgets: tuple[Budget, ...] = ()
    limits: tuple[RateLimit, ...] = ()

    def refusing_level(self, names: Sequence[str]) -> ModelAccess | None:
        """The first level whose list does not allow any of `names`; None when every level allows."""
        for level in self.access:
            if not level.allows(names):
                return level
        return None

    def allows_model(self, names: Sequence[str]) -> bool:
        return self.refusing_level(names) is None


NO_RULES = KeyRules()


@dataclass
class LoadedRules:
    """What `load_rules` returns: the rules per key, and what the spend book needs for every budget."""

    by_key: dict[int, KeyRules] = field(default_factory=dict)
    budgets: dict[tuple[str, int], Budget] = field(default_factory=dict)
    group_members: dict[int, tuple[int, ...]] = field(default_factory=dict)
    user_groups: dict[int, tuple[int, ...]] = field(default_factory=dict)


def access_names(requested: str, alias: str | None) -> list[str]:
    """The names an access list is compared with for a request of `requested` served by `alias`."""
    from routing.config.registry import model_name_candidates

    names = model_name_candidates(requested)
    if alias and alias not in names:
        names.append(alias)
    return names


def _patterns(entries: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(fnmatch.translate(entry.strip()), re.IGNORECASE) for entry in entries)


def _access(who: str, entries: Sequence[str] | None) -> ModelAccess | None:
    cleaned = tuple(str(e).strip() for e in entries or () if str(e).strip())
    return ModelAccess(who, cleaned, _patterns(cleaned)) if cleaned else None


def budget_of(scope: str, subject_id: int, who: str, policy: KeyPolicy | UserPolicy | GroupPolicy) -> Budget | None:
    if policy.budget_usd is None:
        return None
    return Budget(scope, subject_id, who, Decimal(policy.budget_usd), policy.budget_period)


def _limit(scope: str, subject_id: int, who: str, policy: KeyPolicy | UserPolicy) -> RateLimit | None:
    if not policy.limits:
        return None
    return RateLimit(
        scope, subject_id, who, policy.requests_per_minute, policy.tokens_per_minute, policy.concurrent_streams
    )


def key_name(key: ProxyKey) -> str:
    return f"key '{key.label}'" if key.label else f"key {key.prefix}…"


def load_rules(keys: Sequence[ProxyKey]) -> LoadedRules:
    """Fold the policies that apply to `keys` into one `KeyRules` each (synchronous ORM; four queries)."""
    loaded = LoadedRules()
    # Whole tables rather than `IN (…)` lists of every key: policies are few, keys may be many.
    key_policies = {p.key_id: p for p in KeyPolicy.objects.all()}
    user_policies, group_policies, groups_of = _user_and_group_policies({k.user_id for k in keys}, loaded)

    user_parts: dict[int, tuple[list[ModelAccess], list[Budget], list[RateLimit]]] = {}
    for key in keys:
        user_id = key.user_id
        if user_id not in user_parts:
            user_parts[user_id] = _user_part(key.user.get_username(), user_id, user_policies, group_policies, groups_of)
        user_access, user_budgets, user_limits = user_parts[user_id]
        access, budgets, limits = list(user_access), list(user_budgets), list(user_limits)
        policy = key_policies.get(key.pk)
        if policy is not None:
            who = key_name(key)
            key_access = _access(who, policy.allowed_models)
            if key_access:
                access.insert(0, key_access)
            key_budget = budget_of(Scope.KEY, key.pk, who, policy)
            if key_budget:
                budgets.insert(0, key_budget)
            key_limit = _limit(Scope.KEY, key.pk, who, policy)
            if key_limit:
                limits.insert(0, key_limit)
        if access or budgets or limits:
            loaded.by_key[key.pk] = KeyRules(tuple(access), tuple(budgets), tuple(limits))
        for budget in budgets:
            loaded.budgets[budget.subject] = budget
    return loaded


def _user_and_group_policies(
    user_ids: set[int], loaded: LoadedRules
) -> tuple[dict[int, UserPolicy], dict[int, GroupPolicy], dict[int, list[int]]]:
    """The user and group policies, and the policy groups of `user_ids`; sets `loaded`'s memberships."""
    user_policies = {p.user_id: p for p in UserPolicy.objects.all()}
    group_policies = {p.group_id: p for p in GroupPolicy.objects.select_related("group")}
    groups_of: dict[int, list[int]] = defaultdict(list)
    loaded.group_members = group_members(list(group_policies))
    for group_id, members in loaded.group_members.items():
        for user_id in members:
            if user_id in user_ids:
                groups_of[user_id].append(group_id)
    loaded.user_groups = {u: tuple(g) for u, g in groups_of.items()}
    return user_policies, group_policies, groups_of


def group_members(group_ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """The user ids of each group's members, in order (one query): a group's budget is its members' spend."""
    members_of: dict[int, list[int]] = defaultdict(list)
    if group_ids:
        memberships = get_user_model().groups.through.objects.filter(group_id__in=list(group_ids))
        for user_id, group_id in memberships.values_list("user_id", "group_id").order_by("group_id", "user_id"):
            members_of[group_id].append(user_id)
    return {g: tuple(m) for g, m in members_of.items()}


def user_rules(user_id: int, username: str) -> tuple[KeyRules, LoadedRules]:
    """The rules of a user and their groups alone, before any key's own (what /me/ shows for a person with no key
    policy); the `LoadedRules` carry the group memberships their budgets are summed over."""
    loaded = LoadedRules()
    user_policies, group_policies, groups_of = _user_and_group_policies({user_id}, loaded)
    access, budgets, limits = _user_part(username, user_id, user_policies, group_policies, groups_of)
    return KeyRules(tuple(access), tuple(budgets), tuple(limits)), loaded


def _user_part(
    username: str,
    user_id: int,
    user_policies: dict[int, UserPolicy],
    group_policies: dict[int, GroupPolicy],
    groups_of: dict[int, list[int]],
) -> tuple[list[ModelAccess], list[Budget], list[RateLimit]]:
    access: list[ModelAccess] = []
    budgets: list[Budget] = []
    limits: list[RateLimit] = []
    policy = user_policies.get(user_id)
    if policy is not None:
        who = f"user '{username}'"
        user_access = _access(who, policy.allowed_models)
        if user_access:
            access.append(user_access)
        user_budget = budget_of(Scope.USER, user_id, who, policy)
        if user_budget:
            budgets.append(user_budget)
        user_limit = _limit(Scope.USER, user_id, who, policy)
        if user_limit:
            limits.append(user_limit)
    listing = [group_policies[g] for g in groups_of.get(user_id, ()) if group_policies[g].allowed_models]
    if listing:
        names = ", ".join(f"'{p.group.name}'" for p in listing)
        who = f"group {names}" if len(listing) == 1 else f"groups {names}"
        entries = [entry for p in listing for entry in p.allowed_models]
        group_access = _access(who, entries)
        if group_access:
            access.append(group_access)
    for group_id in groups_of.get(user_id, ()):
        group_policy = group_policies[group_id]
        group_budget = budget_of(Scope.GROUP, group_id, f"group '{group_policy.group.name}'", group_policy)
        if group_budget:
            budgets.append(group_budget)
    return access, budgets, limits


# --- budget periods ---------------------------------------------------------------------------------------


def period_bounds(period: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """[start, end) of the UTC calendar period holding `now`; (None, None) for `none` (all time)."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == BudgetPeriod.DAY:
        return day, day + timedelta(days=1)
    if period == BudgetPeriod.WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == BudgetPeriod.MONTH:
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start, end
    return None, None


PERIOD_WORDS: dict[str, str] = {
    BudgetPeriod.DAY: "today",
    BudgetPeriod.WEEK: "this week",
    BudgetPeriod.MONTH: "this month",
    BudgetPeriod.NONE: "in total",
}
