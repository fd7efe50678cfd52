"""Budget spend per key, user and group, known in memory so a request never queries the database for it.

Each worker keeps `spend_book`: for every budget of the current snapshot, what was spent in its current period.
It is set from the database (`refresh`, on the database thread: one aggregate query over the daily usage rollups
per budget period in use) when the configuration loads and every `BUDGET_REFRESH_INTERVAL` seconds, and between
refreshes it grows by the cost of every ledger row this worker writes (`add_rows`, a `usage.ledger` hook that runs
on the same thread right after the rows are committed, so a refresh and a local addition never overlap).

What the hot path does (`check`): per budget, one dict lookup and a comparison. A request is refused once the
period's spend has reached the budget; the requests already running when that happens still finish, so a budget
can be overshot by what they cost, plus what other workers spent since the last refresh.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Q, Sum

from routing.access.policy import PERIOD_WORDS, Budget, KeyRules, Scope, period_bounds
from routing.config.registry import Snapshot
from translation.errors import ApiError, ErrorKind
from usage import ledger
from usage.models import LedgerEntry, Period, UsageRollup

logger = logging.getLogger(__name__)

ZERO = Decimal(0)


@dataclass(slots=True)
class _Spend:
    start: float | None  # epoch seconds; None: all time
    end: float | None
    amount: Decimal


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


class SpendBook:
    def __init__(self) -> None:
        self._spent: dict[tuple[str, int, str], _Spend] = {}
        self._budgets: dict[tuple[str, int], Budget] = {}
        self._user_groups: dict[int, tuple[int, ...]] = {}
        self.refreshed_at = 0.0

    # -- the hot path --------------------------------------------------------------------------------------

    def spent(self, budget: Budget, now: float) -> Decimal:
        entry = self._spent.get((budget.scope, budget.subject_id, budget.period))
        if entry is None or (entry.end is not None and now >= entry.end):
            return ZERO  # not loaded yet, or its period is over (the next refresh starts the new one)
        return entry.amount

    def check(self, rules: KeyRules, now: float) -> ApiError | None:
        """The error for the first budget of `rules` that is spent, else None."""
        for budget in rules.budgets:
            spent = self.spent(budget, now)
            if spent >= budget.amount:
                return exhausted(budget, spent, now)
        return None

    def standings(self, now: float) -> list[tuple[Budget, Decimal]]:
        """Every budget this worker knows, with its spend in the current period (the alerts read them)."""
        return [(budget, self.spent(budget, now)) for budget in self._budgets.values()]

    # -- the database thread -------------------------------------------------------------------------------

    def refresh(self, snapshot: Snapshot, now: datetime | None = None) -> None:
        """Recompute every budget's spend from the daily rollups (synchronous ORM; the database thread)."""
        now = now or datetime.now(UTC)
        spent: dict[tuple[str, int, str], _Spend] = {}
        for (scope, subject_id, period), amount in current_spend(
            snapshot.budgets.values(), snapshot.group_members, now
        ).items():
            start, end = period_bounds(period, now)
            spent[(scope, subject_id, period)] = _Spend(_epoch(start), _epoch(end), amount)
        self._budgets = dict(snapshot.budgets)
        self._user_groups = dict(snapshot.user_groups)
        self._spent = spent
        self.refreshed_at = time.monotonic()

    def add_rows(self, rows: Sequence[LedgerEntry]) -> None:
        """Count the cost of ledger rows this worker just committed (a `usage.ledger.after_write` hook)."""
        if not self._budgets:
            return
        for row in rows:
            if not row.cost_usd:
                continue
            started = row.started_at.timestamp()
            subjects: list[tuple[str, int]] = []
            if row.key_id is not None:
                subjects.append((Scope.KEY, row.key_id))
            if row.user_id is not None:
                subjects.append((Scope.USER, row.user_id))
                subjects.extend((Scope.GROUP, g) for g in self._user_groups.get(row.user_id, ()))
            for subject in subjects:
                budget = self._budgets.get(subject)
                if budget is None:
                    continue
                entry = self._spent.get((*subject, budget.period))
                if entry is None or (entry.start is not None and started < entry.start):
                    continue  # before the period the book holds (or not loaded: the next refresh counts it)
                entry.amount += row.cost_usd


def current_spend(
    budgets: Iterable[Budget], group_members: Mapping[int, Sequence[int]], now: datetime
) -> dict[tuple[str, int, str], Decimal]:
    """What each budget's key, user or group (its members' together) spent in the period holding `now`, keyed
    `(scope, subject_id, period)`: one aggregate query over the daily rollups per period in use (synchronous ORM).
    The one way spend is counted: the spend book is set from it, and the dashboard's Budgets panel shows it."""
    by_period: dict[str, list[Budget]] = defaultdict(list)
    for budget in budgets:
        by_period[budget.period].append(budget)
    spent: dict[tuple[str, int, str], Decimal] = {}
    for period, in_period in by_period.items():
        key_ids = {b.subject_id for b in in_period if b.scope == Scope.KEY}
        user_ids = {b.subject_id for b in in_period if b.scope == Scope.USER}
        for b in in_period:
            if b.scope == Scope.GROUP:
                user_ids.update(group_members.get(b.subject_id, ()))
        per_key, per_user = _spend_by_subject(period, key_ids, user_ids, now)
        for b in in_period:
            if b.scope == Scope.KEY:
                amount = per_key.get(b.subject_id, ZERO)
            elif b.scope == Scope.USER:
                amount = per_user.get(b.subject_id, ZERO)
            else:
                amount = sum((per_user.get(u, ZERO) for u in group_members.get(b.subject_id, ())), ZERO)
            spent[(b.scope, b.subject_id, period)] = amount
    return spent


def period_spend(period: str, *, key_id: int | None = None, user_ids: Sequence[int] = ()) -> Decimal:
    """What a key (or some users together) spent in the current `period` (synchronous ORM: the admin shows it)."""
    keys = {key_id} if key_id is not None else set()
    per_key, per_user = _spend_by_subject(period, keys, set() if key_id is not None else set(user_ids))
    if key_id is not None:
        return per_key.get(key_id, ZERO)
    return sum(per_user.values(), ZERO)


def _spend_by_subject(
    period: str, key_ids: set[int], user_ids: set[int], now: datetime | None = None
) -> tuple[dict[int, Decimal], dict[int, Decimal]]:
    """The spend of each of `key_ids` and of `user_ids` in the period holding `now`: one aggregate query over the
    daily rollups, the only place spend is read from."""
    start, _ = period_bounds(period, now or datetime.now(UTC))
    rollups = UsageRollup.objects.filter(hours=Period.DAY).filter(Q(key_id__in=key_ids) | Q(user_id__in=user_ids))
    if start is not None:
        rollups = rollups.filter(period__gte=start)
    per_key: dict[int, Decimal] = defaultdict(Decimal)
    per_user: dict[int, Decimal] = defaultdict(Decimal)
    for key, user, cost in (
        rollups.values("key_id", "user_id").annotate(cost=Sum("cost_usd")).values_list("key_id", "user_id", "cost")
    ):
        if key in key_ids:
            per_key[key] += cost or ZERO
        if user in user_ids:
            per_user[user] += cost or ZERO
    return per_key, per_user


spend_book = SpendBook()
ledger.after_write.append(spend_book.add_rows)


def exhausted(budget: Budget, spent: Decimal, now: float) -> ApiError:
    """The refusal: names the budget, what was spent, and when it resets."""
    _, end = period_bounds(budget.period, datetime.fromtimestamp(now, tz=UTC))
    spent_text = f"{_dollars(spent)} of {_dollars(budget.amount)} {PERIOD_WORDS.get(budget.period, '')}".rstrip()
    if end is None:
        message = (
            f"The budget of {budget.who} is spent ({spent_text}). It has no period and does not reset: "
            "ask an administrator to raise it."
        )
        return ApiError(ErrorKind.BUDGET_EXHAUSTED, message)
    seconds = max(1, math.ceil(end.timestamp() - now))
    message = (
        f"The budget of {budget.who} is spent ({spent_text}). It resets at {end:%Y-%m-%d %H:%M} UTC "
        f"(in {_duration(seconds)})."
    )
    return ApiError(ErrorKind.BUDGET_EXHAUSTED, message, retry_after=str(seconds))


def _dollars(amount: Decimal) -> str:
    """Dollars and cents; an amount below a cent (a budget of $0.005) with the digits that make it."""
    if amount == amount.quantize(Decimal("0.01")) or abs(amount) >= 1:
        return f"${amount:,.2f}"
    return f"${amount:,.6f}".rstrip("0")


def _duration(seconds: int) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 3600:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours > 1 else ''}"
    minutes = max(1, seconds // 60)
    return f"{minutes} minute{'s' if minutes > 1 else ''}"
