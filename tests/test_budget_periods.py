"""Budget periods and the in-memory spend book, with a clock the test controls (routing.access.policy,
routing.access.budgets)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from routing.access.budgets import SpendBook, exhausted
from routing.access.policy import Budget, KeyRules, period_bounds
from routing.config.registry import Snapshot
from usage.models import LedgerEntry, Period, UsageRollup


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("day", "2026-11-22 13:05", "2026-11-22 00:00", "2026-11-23 00:00"),
        ("week", "2026-11-22 13:05", "2026-11-16 00:00", "2026-11-23 00:00"),  # a Sunday: the week began Monday
        ("week", "2026-11-23 00:00", "2026-11-23 00:00", "2026-11-30 00:00"),
        ("month", "2026-11-22 13:05", "2026-11-01 00:00", "2026-12-01 00:00"),
        ("month", "2026-12-31 23:59", "2026-12-01 00:00", "2027-01-01 00:00"),
        ("month", "2028-02-29 12:00", "2028-02-01 00:00", "2028-03-01 00:00"),
    ],
)
def test_periods_are_utc_calendar_periods(period, now, start, end):
    assert period_bounds(period, at(now)) == (at(start), at(end))


def test_a_period_is_read_in_utc_whatever_the_zone_of_the_clock():
    evening_in_new_york = datetime(2026, 11, 22, 21, 0, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    assert period_bounds("day", evening_in_new_york)[0] == at("2026-11-22 00:00")


def test_no_period_has_no_bounds():
    assert period_bounds("none", at("2026-11-22 13:05")) == (None, None)


KEY_BUDGET = Budget("key", 7, "key 'laptop'", Decimal("1.00"), "day")
GROUP_BUDGET = Budget("group", 3, "group 'research'", Decimal("5.00"), "month")


def snapshot() -> Snapshot:
    return Snapshot(
        budgets={KEY_BUDGET.subject: KEY_BUDGET, GROUP_BUDGET.subject: GROUP_BUDGET},
        group_members={3: (1, 2)},
        user_groups={1: (3,), 2: (3,)},
    )


def rollup(day: datetime, user_id: int, key_id: int, cost: str, alias: str = "m") -> UsageRollup:
    return UsageRollup.objects.create(
        hours=Period.DAY, period=day, user_id=user_id, key_id=key_id, alias=alias, requests=1, cost_usd=Decimal(cost)
    )


@pytest.mark.django_db
def test_refresh_sums_the_daily_rollups_of_the_current_period():
    now = at("2026-11-22 13:05")
    rollup(at("2026-11-22 00:00"), user_id=1, key_id=7, cost="0.40")
    rollup(at("2026-11-22 00:00"), user_id=1, key_id=7, cost="0.35", alias="other")  # same key, another alias
    rollup(at("2026-11-21 00:00"), user_id=1, key_id=7, cost="9.00")  # yesterday: not today's budget
    rollup(at("2026-11-10 00:00"), user_id=2, key_id=8, cost="2.00")  # bob, earlier this month
    rollup(at("2026-10-31 00:00"), user_id=2, key_id=8, cost="7.00")  # last month
    rollup(at("2026-11-22 00:00"), user_id=9, key_id=9, cost="50.00")  # not a member
    book = SpendBook()
    book.refresh(snapshot(), now=now)
    clock = now.timestamp()
    assert book.spent(KEY_BUDGET, clock) == Decimal("0.75")
    assert book.spent(GROUP_BUDGET, clock) == Decimal("0.75") + Decimal("9.00") + Decimal("2.00")
    assert book.check(KeyRules(budgets=(KEY_BUDGET, GROUP_BUDGET)), clock) is not None  # the group's is spent
    assert book.check(KeyRules(budgets=(KEY_BUDGET,)), clock) is None


@pytest.mark.django_db
def test_the_spend_of_a_period_stops_counting_when_it_ends():
    now = at("2026-11-22 23:59")
    rollup(at("2026-11-22 00:00"), user_id=1, key_id=7, cost="1.00")
    book = SpendBook()
    book.refresh(snapshot(), now=now)
    rules = KeyRules(budgets=(KEY_BUDGET,))
    assert book.check(rules, now.timestamp()) is not None
    midnight = at("2026-11-23 00:00").timestamp()
    assert book.spent(KEY_BUDGET, midnight) == 0  # before any refresh: the old day no longer counts
    assert book.check(rules, midnight) is None
    book.refresh(snapshot(), now=at("2026-11-23 00:00:01"))
    assert book.spent(KEY_BUDGET, midnight + 1) == 0


def ledger_row(started: datetime, user_id: int | None, key_id: int | None, cost: str | None) -> LedgerEntry:
    return LedgerEntry(
        started_at=started, user_id=user_id, key_id=key_id, cost_usd=Decimal(cost) if cost is not None else None
    )


@pytest.mark.django_db
def test_rows_this_worker_writes_add_to_their_budgets_until_the_next_refresh():
    now = at("2026-11-22 13:05")
    book = SpendBook()
    book.refresh(snapshot(), now=now)
    book.add_rows(
        [
            ledger_row(now, user_id=1, key_id=7, cost="0.30"),  # the key's day and the group's month
            ledger_row(now, user_id=2, key_id=8, cost="0.20"),  # the group only
            ledger_row(now, user_id=9, key_id=9, cost="4.00"),  # no budget of theirs
            ledger_row(now, user_id=1, key_id=7, cost=None),  # unpriced: nothing to add
            ledger_row(at("2026-11-21 23:00"), user_id=1, key_id=7, cost="1.00"),  # started yesterday
        ]
    )
    clock = now.timestamp()
    assert book.spent(KEY_BUDGET, clock) == Decimal("0.30")
    assert book.spent(GROUP_BUDGET, clock) == Decimal("1.50")  # 0.30 + 0.20 + yesterday's 1.00 (same month)


def test_the_refusal_names_the_budget_and_its_reset():
    now = at("2026-11-22 22:30").timestamp()
    error = exhausted(KEY_BUDGET, Decimal("1.004"), now)
    assert error.message == (
        "The budget of key 'laptop' is spent ($1.00 of $1.00 today). It resets at 2026-11-23 00:00 UTC (in 1 hour)."
    )
    assert error.retry_after == str(90 * 60)
    month = exhausted(GROUP_BUDGET, Decimal("5.5"), now)
    assert month.message.endswith("It resets at 2026-12-01 00:00 UTC (in 8 days).")
    total = exhausted(Budget("user", 1, "user 'alice'", Decimal(10), "none"), Decimal(12), now)
    assert total.retry_after is None
    assert "does not reset" in total.message


def test_a_budget_below_a_cent_is_named_with_its_digits():
    now = at("2026-11-22 22:30").timestamp()
    error = exhausted(Budget("key", 7, "key 'tiny'", Decimal("0.005"), "day"), Decimal("0.0052"), now)
    assert "($0.0052 of $0.005 today)" in error.message
