"""The staff dashboard: figures equal hand-computed sums of ledger rows, filters, the CSV export, access."""

from __future__ import annotations

import csv
import io
import random
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from routing.models import ProxyKey
from usage import queries
from usage.models import LatencyRollup, LedgerEntry, Outcome, UsageRollup
from usage.queries import RAW, ROLLUP, Filters
from usage.rollups import apply_rollups, bucket_bounds, bucket_of, rebuild_rollups

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC)


def entry(**fields: Any) -> LedgerEntry:
    started = fields.pop("started_at", NOW - timedelta(hours=1))
    defaults: dict[str, Any] = {
        "started_at": started,
        "finished_at": started + timedelta(milliseconds=fields.get("duration_ms", 1000)),
        "dialect": "anthropic",
        "endpoint": "/v1/messages",
        "outcome": Outcome.OK,
        "status": 200,
        "duration_ms": 1000,
    }
    defaults.update(fields)
    return LedgerEntry(**defaults)


def write(*rows: LedgerEntry) -> list[LedgerEntry]:
    """As the ledger's write path does: the rows and their rollups in one transaction."""
    created = LedgerEntry.objects.bulk_create(rows)
    apply_rollups(created)
    return created


def section_rows(html: str, section_id: str) -> list[list[str]]:
    """The data rows of the table in a page's section, as the text of their cells (header rows left out)."""
    section = html.split(f'id="{section_id}"')[1].split("</section>")[0]
    rows = [
        [unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>([\s\S]*?)</td>", row)]
        for row in re.findall(r"<tr(?:\s[^>]*)?>([\s\S]*?)</tr>", section)
    ]
    return [row for row in rows if row]


def figure(html: str, metric: str) -> str:
    found = re.search(rf'data-metric="{metric}" data-value="([^"]*)"', html)
    assert found, metric
    return found.group(1)


@pytest.fixture
def staff(db: None) -> User:
    return User.objects.create_user("boss", password="boss-password", is_staff=True)


@pytest.fixture
def staff_client(staff: User) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def team(db: None) -> dict[str, Any]:
    alice = User.objects.create_user("alice", password="x")
    bob = User.objects.create_user("bob", password="x")
    alice_key, _ = ProxyKey.issue(alice, label="laptop")
    bob_key, _ = ProxyKey.issue(bob, label="ci")
    rows = write(
        entry(
            user=alice,
            key=alice_key,
            alias="sonnet",
            upstream="anthropic",
            upstream_model="claude-sonnet-4",
            client_program="Claude Code",
            input_tokens=100,
            output_tokens=50,
            cache_read_tokens=300,
            cache_write_tokens=100,
            cost_usd=Decimal("0.0125"),
            duration_ms=1200,
            ttft_ms=300,
            tokens_per_second=40.0,
        ),
        entry(
            user=alice,
            key=alice_key,
            alias="sonnet",
            upstream="anthropic",
            upstream_model="claude-sonnet-4",
            client_program="Claude Code",
            input_tokens=10,
            output_tokens=5,
            cache_read_tokens=0,
            cache_write_tokens=0,
            cost_usd=Decimal("0.0010"),
            duration_ms=800,
        ),
        entry(
            user=bob,
            key=bob_key,
            alias="local",
            upstream="ollama",
            upstream_model="qwen3-coder",
            client_program="Codex",
            input_tokens=1000,
            output_tokens=200,
            cost_usd=None,  # unpriced: never counted as $0
            duration_ms=5000,
        ),
        entry(
            user=bob,
            key=bob_key,
            alias="local",
            upstream="ollama",
            upstream_model="qwen3-coder",
            client_program="Codex",
            outcome=Outcome.UPSTREAM_ERROR,
            status=502,
            duration_ms=50,
        ),
        entry(
            user=alice,
            key=alice_key,
            alias="sonnet",
            upstream="anthropic",
            upstream_model="claude-sonnet-4",
            outcome=Outcome.CANCELLED,
            status=200,
            input_tokens=7,
            duration_ms=100,
            cost_usd=Decimal("0.0001"),
        ),
        # Outside the default range (7 calendar days): in no figure.
        entry(
            user=alice,
            key=alice_key,
            alias="sonnet",
            upstream="anthropic",
            upstream_model="claude-sonnet-4",
            started_at=NOW - timedelta(days=40),
            input_tokens=999_999,
            cost_usd=Decimal(99),
        ),
    )
    return {"alice": alice, "bob": bob, "alice_key": alice_key, "bob_key": bob_key, "rows": rows}


# ---------------------------------------------------------------------------------------------------------------
# Access


def test_anonymous_is_sent_to_login(client: Client) -> None:
    for path in ("/dashboard/", "/dashboard/export.csv"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")


def test_non_staff_get_403(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    User.objects.create_user("carol", password="carol-password")
    client.login(username="carol", password="carol-password")
    for path in ("/dashboard/", "/dashboard/export.csv", "/dashboard/live/"):
        response = client.get(path)
        assert response.status_code == 403, path
        page = response.content.decode()
        # The site's own page: the nav, what happened, and a way back (not a bare "403 Forbidden").
        assert 'class="topbar"' in page and "This page is for staff." in page
        assert 'id="back-to-my-page" href="/me/"' in page
    # An expected refusal is not an error: no traceback in the log.
    assert not [record for record in caplog.records if record.exc_info]


def test_home_redirects_by_role(client: Client, staff: User) -> None:
    assert client.get("/")["Location"].startswith("/accounts/login/")
    client.force_login(staff)
    assert client.get("/")["Location"] == "/dashboard/"
    client.force_login(User.objects.create_user("dave", password="x"))
    assert client.get("/")["Location"] == "/me/"


def test_login_page_logs_in_and_out(client: Client, staff: User) -> None:
    page = client.get("/accounts/login/").content.decode()
    assert 'name="username"' in page and 'name="password"' in page and 'type="submit"' in page
    response = client.post("/accounts/login/", {"username": "boss", "password": "boss-password", "next": "/dashboard/"})
    assert response["Location"] == "/dashboard/"
    page = client.get("/dashboard/").content.decode()
    assert 'action="/accounts/logout/"' in page and "csrfmiddlewaretoken" in page
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/dashboard/").status_code == 302


def test_static_css_is_linked(staff_client: Client) -> None:
    page = staff_client.get("/dashboard/").content.decode()
    assert '<link rel="stylesheet" href="/static/usage/app.css">' in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page


# ---------------------------------------------------------------------------------------------------------------
# Figures


def test_figures_equal_the_rows(staff_client: Client, team: dict[str, Any]) -> None:
    html = staff_client.get("/dashboard/").content.decode()
    assert figure(html, "requests") == "5"
    assert figure(html, "errors") == "1"  # the cancelled exchange is not an error
    assert figure(html, "input_tokens") == str(100 + 10 + 1000 + 7)
    assert figure(html, "output_tokens") == str(50 + 5 + 200)
    assert figure(html, "cache_read_tokens") == "300"
    assert figure(html, "cache_write_tokens") == "100"
    assert figure(html, "unpriced") == "2"  # the local model and the failed exchange
    assert Decimal(figure(html, "cost_usd")) == Decimal("0.0125") + Decimal("0.0010") + Decimal("0.0001")
    share = 300 / (100 + 10 + 1000 + 7 + 300 + 100)
    assert float(figure(html, "cache_hit_share")) == pytest.approx(share)
    assert "19.8 %" in html  # the share as shown
    assert figure(html, "no_usage") == "1"
    assert "$0.0136" in html
    assert "2 unpriced" in html


def test_unpriced_is_never_zero_dollars(staff_client: Client, team: dict[str, Any]) -> None:
    html = staff_client.get(f"/dashboard/?user={team['bob'].pk}").content.decode()
    assert figure(html, "requests") == "2"
    assert figure(html, "unpriced") == "2"
    tile = html[html.index('data-metric="cost_usd"') :]
    assert '<div class="value unpriced">unpriced</div>' in tile[:400]
    cost_chart = html[html.index('id="chart-cost"') : html.index("</svg>", html.index('id="chart-cost"'))]
    assert ": unpriced</title>" in cost_chart
    assert ": $0</title>" not in cost_chart  # empty buckets say "no exchanges", unpriced ones "unpriced"
    assert "$0" not in html[html.index('id="by-user"') : html.index('id="recent"')]


def test_every_count_on_the_page_has_thousands_separators(staff_client: Client, db: None) -> None:
    """As on /me/ and in the breakdowns: no bare 1001 beside a 1,001."""
    cancelled = [entry(outcome=Outcome.CANCELLED, upstream_model="m", cost_usd=None) for _ in range(1001)]
    write(
        *cancelled, entry(upstream_model="m", output_tokens=1_300_000, reasoning_tokens=1_234_567, cost_usd=Decimal(1))
    )
    html = staff_client.get("/dashboard/").content.decode()
    assert "1,001 cancelled" in html
    assert "1,234,567 reasoning" in html
    assert '<span class="unpriced">1,001 unpriced</span> (not in the sum)' in html
    assert "1,001 unpriced exchanges are not in the line" in html
    assert '<div class="label">No token counts</div><div class="value">1,001</div>' in html
    assert "+1,001 unpriced" in section_rows(html, "by-upstream_model")[0][1]
    assert not re.search(r">\s*1001\b", html)


def test_filters_change_the_figures(staff_client: Client, team: dict[str, Any]) -> None:
    alice = staff_client.get(f"/dashboard/?user={team['alice'].pk}").content.decode()
    assert figure(alice, "requests") == "3"
    assert figure(alice, "input_tokens") == "117"
    assert figure(alice, "errors") == "0"
    local = staff_client.get("/dashboard/?alias=local").content.decode()
    assert figure(local, "requests") == "2"
    assert figure(local, "errors") == "1"
    assert figure(local, "input_tokens") == "1000"
    both = staff_client.get(f"/dashboard/?alias=local&user={team['alice'].pk}").content.decode()
    assert figure(both, "requests") == "0"
    wide = staff_client.get("/dashboard/?range=90d").content.decode()
    assert figure(wide, "requests") == "6"
    assert figure(wide, "input_tokens") == str(1117 + 999_999)
    day = (NOW - timedelta(days=40)).date().isoformat()
    one_day = staff_client.get(f"/dashboard/?from={day}&to={day}").content.decode()
    assert figure(one_day, "requests") == "1"
    assert figure(one_day, "cost_usd") == "99.00000000"


def test_breakdowns(team: dict[str, Any]) -> None:
    filters = Filters.from_params({})
    by_user = {row.label: row.figures for row in queries.breakdown(filters, "user").rows}
    assert by_user["alice"].requests == 3 and by_user["bob"].requests == 2
    assert by_user["bob"].unpriced == 2 and by_user["alice"].cost_usd == Decimal("0.0136")
    by_key = {row.label: row.figures.requests for row in queries.breakdown(filters, "key").rows}
    assert by_key == {f"{team['alice_key'].prefix}… laptop (alice)": 3, f"{team['bob_key'].prefix}… ci (bob)": 2}
    by_alias = {row.label: row.figures.input_tokens for row in queries.breakdown(filters, "alias").rows}
    assert by_alias == {"sonnet": 117, "local": 1000}
    by_model = {row.label: row.figures.errors for row in queries.breakdown(filters, "upstream_model").rows}
    assert by_model == {"claude-sonnet-4": 0, "qwen3-coder": 1}
    by_client = {row.label: row.figures.requests for row in queries.breakdown(filters, "client_program").rows}
    assert by_client == {"Claude Code": 2, "Codex": 2, "(unknown client)": 1}


def test_series_buckets_and_sums(team: dict[str, Any]) -> None:
    filters = Filters.from_params({"range": "24h"})
    assert filters.bucket == "hour"
    points = queries.series(filters)
    assert len(points) == 24
    assert sum(f.requests for _, f in points) == 5
    week = Filters.from_params({"range": "7d"})
    assert week.bucket == "day" and len(queries.series(week)) == 7
    assert Filters.from_params({"range": "90d"}).bucket == "day"
    assert Filters.from_params({"range": "90d", "bucket": "month"}).bucket == "month"
    # An hourly chart of 90 days would be too many bars: widened to days.
    assert Filters.from_params({"range": "90d", "bucket": "hour"}).bucket == "day"


def test_page_shows_charts_with_a_bar_per_bucket(staff_client: Client, team: dict[str, Any]) -> None:
    html = staff_client.get("/dashboard/?range=24h").content.decode()
    requests_svg = html[html.index('id="chart-requests"') : html.index("</svg>", html.index('id="chart-requests"'))]
    assert requests_svg.count('class="bar s0') == 24
    assert sum(float(v) for v in re.findall(r'class="bar s0[^"]*" data-value="([^"]+)"', requests_svg)) == 5
    tokens_svg = html[html.index('id="chart-tokens"') : html.index("</svg>", html.index('id="chart-tokens"'))]
    assert tokens_svg.count('class="bar ') == 24 * 4
    cost_svg = html[html.index('id="chart-cost"') : html.index("</svg>", html.index('id="chart-cost"'))]
    assert cost_svg.count('class="point"') == 24
    assert "<title>" in requests_svg


def x_labels(html: str, chart: str) -> list[list[str]]:
    """The labels under a chart's bars, each as its lines."""
    svg = html[html.index(f'id="{chart}"') : html.index("</svg>", html.index(f'id="{chart}"'))]
    return [
        [line for line in re.split(r"<tspan[^>]*>", label.replace("</tspan>", "")) if line]
        for label in re.findall(r'<text class="xlabel"[^>]*>([\s\S]*?)</text>', svg)
    ]


def test_an_hourly_chart_dates_each_day_it_shows(staff_client: Client, db: None) -> None:
    """The day changes between two labels (midnight is not one of them): the first label of the new day carries
    its date, so an hour is never read on the wrong day."""
    html = staff_client.get("/dashboard/", {"from": "2026-11-20T13:00", "to": "2026-11-21T13:00"}).content.decode()
    labels = x_labels(html, "chart-requests")
    assert [label[0] for label in labels] == ["13:00", "16:00", "19:00", "22:00", "01:00", "04:00", "07:00", "10:00"]
    assert labels[0] == ["13:00", "Nov 20"] and labels[4] == ["01:00", "Nov 21"]
    assert all(len(label) == 1 for index, label in enumerate(labels) if index not in (0, 4))
    assert "Fri 2026-11-20 13:00 to 14:00 UTC" in html  # each bar's tooltip: the date, the hour, the zone
    assert 'Requests per hour <span class="muted small">(UTC)</span>' in html
    # Three days by hour (a label every 9 hours): each day a label falls on is dated at its first one.
    html = staff_client.get("/dashboard/", {"from": "2026-11-20T05:00", "to": "2026-11-23T05:00"}).content.decode()
    assert x_labels(html, "chart-cost") == [
        ["05:00", "Nov 20"],
        ["14:00"],
        ["23:00"],
        ["08:00", "Nov 21"],
        ["17:00"],
        ["02:00", "Nov 22"],
        ["11:00"],
        ["20:00"],
    ]


def test_a_large_cost_axis_fits_its_margin(staff_client: Client, db: None) -> None:
    write(entry(upstream_model="m", cost_usd=Decimal("24000")))
    html = staff_client.get("/dashboard/?range=24h").content.decode()
    svg = html[html.index('id="chart-cost"') : html.index("</svg>", html.index('id="chart-cost"'))]
    ticks = re.findall(r'text-anchor="end">([^<]+)</text>', svg)
    assert ticks == ["0", "$5k", "$10k", "$15k", "$20k", "$25k"]


def test_recent_exchanges_link_to_the_admin(staff_client: Client, team: dict[str, Any]) -> None:
    html = staff_client.get("/dashboard/").content.decode()
    recent = html[html.index('id="recent"') :]
    for row in team["rows"][:5]:
        assert f"/admin/usage/ledgerentry/{row.pk}/change/" in recent
    assert f"/admin/usage/ledgerentry/{team['rows'][5].pk}/change/" not in recent  # outside the range
    assert "Upstream error" in recent and "Cancelled by client" in recent


def test_recent_is_limited_to_50(team: dict[str, Any]) -> None:
    write(*[entry(alias="bulk", started_at=NOW - timedelta(minutes=i)) for i in range(60)])
    assert len(queries.recent(Filters.from_params({}))) == 50


# ---------------------------------------------------------------------------------------------------------------
# The export


def read_csv(response: Any) -> list[dict[str, str]]:
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_export_contains_exactly_the_filtered_rows(staff_client: Client, team: dict[str, Any]) -> None:
    rows = read_csv(staff_client.get("/dashboard/export.csv"))
    assert len(rows) == 5
    assert {r["user"] for r in rows} == {"alice", "bob"}
    assert sum(int(r["input tokens"] or 0) for r in rows) == 1117
    assert "key_hash" not in rows[0] and "key prefix" in rows[0] and "cost (USD)" in rows[0]
    assert not any(team["alice_key"].key_hash in value for r in rows for value in r.values())
    unpriced = [r for r in rows if r["cost (USD)"] == ""]
    assert len(unpriced) == 2

    alice = read_csv(staff_client.get(f"/dashboard/export.csv?user={team['alice'].pk}"))
    assert len(alice) == 3 and {r["user"] for r in alice} == {"alice"}
    local = read_csv(staff_client.get("/dashboard/export.csv?alias=local&range=90d"))
    assert len(local) == 2 and {r["alias"] for r in local} == {"local"}
    everything = read_csv(staff_client.get("/dashboard/export.csv?range=90d"))
    assert len(everything) == 6


def test_export_link_carries_the_filters(staff_client: Client, team: dict[str, Any]) -> None:
    html = staff_client.get(f"/dashboard/?range=24h&user={team['bob'].pk}&alias=local").content.decode()
    assert f'href="/dashboard/export.csv?range=24h&amp;user={team["bob"].pk}&amp;alias=local"' in html


def test_export_defuses_formulas(staff_client: Client) -> None:
    write(entry(error_message="=HYPERLINK(1)", requested_model="m"))
    rows = read_csv(staff_client.get("/dashboard/export.csv"))
    assert rows[0]["error message"] == "'=HYPERLINK(1)"


# ---------------------------------------------------------------------------------------------------------------
# Percentiles


def test_exact_percentiles_on_a_known_set() -> None:
    # 1..100: p50 = 50.5, p90 = 90.1, p99 = 99.01 (PostgreSQL's percentile_cont gives the same).
    assert queries.exact_percentiles(list(range(1, 101))) == pytest.approx((50.5, 90.1, 99.01))
    assert queries.exact_percentiles([7]) == (7, 7, 7)
    assert queries.exact_percentiles([]) is None


def test_speed_per_model_is_exact_for_small_views(db: None) -> None:
    write(
        *[
            entry(upstream_model="m1", duration_ms=d, ttft_ms=d // 10, tokens_per_second=d / 100)
            for d in range(100, 1100, 100)
        ]
    )
    write(entry(upstream_model="m2", duration_ms=5000, ttft_ms=None, tokens_per_second=None))
    speeds = {s.upstream_model: s for s in queries.speed(Filters.from_params({}))}
    m1 = speeds["m1"]
    assert not m1.approximate and m1.count == 10
    # 100, 200, ... 1000: p50 = 550, p90 = 910, p99 = 991.
    assert m1.percentiles[LatencyRollup.Metric.DURATION] == pytest.approx((550, 910, 991))
    assert m1.percentiles[LatencyRollup.Metric.TTFT] == pytest.approx((55, 91, 99.1))
    assert m1.percentiles[LatencyRollup.Metric.TOKENS_PER_SECOND] == pytest.approx((5.5, 9.1, 9.91))
    m2 = speeds["m2"]
    assert m2.percentiles[LatencyRollup.Metric.DURATION] == (5000, 5000, 5000)
    assert m2.percentiles[LatencyRollup.Metric.TTFT] is None


@pytest.mark.parametrize("exact_limit", [10_000, 0], ids=["exact", "histograms"])
def test_failures_are_counted_apart_and_kept_out_of_the_percentiles(db: None, exact_limit: int) -> None:
    worked = [entry(upstream_model="m", duration_ms=d, ttft_ms=d // 2) for d in (1000, 2000, 3000)]
    refused = entry(upstream_model="m", duration_ms=8, ttft_ms=None, outcome=Outcome.CLIENT_ERROR, status=400)
    broken = entry(upstream_model="m", duration_ms=0, ttft_ms=0, outcome=Outcome.UPSTREAM_ERROR, status=502)
    write(*worked, refused, broken)
    (speed,) = queries.speed(Filters.from_params({}), exact_limit=exact_limit)
    assert (speed.count, speed.failed) == (3, 2)
    duration, ttft = (speed.percentiles[m] for m in (LatencyRollup.Metric.DURATION, LatencyRollup.Metric.TTFT))
    assert duration is not None and ttft is not None
    p50, _, p99 = duration
    assert 1000 / 2 ** (1 / 4) <= p50 <= 2000 * 2 ** (1 / 4) and p99 >= 2000  # not dragged down to 8 or 0 ms
    assert ttft[0] >= 500 / 2 ** (1 / 4)


def test_histogram_percentiles_are_within_their_bound(db: None) -> None:
    rng = random.Random(7)
    durations = [int(rng.lognormvariate(7, 1)) + 1 for _ in range(2000)]
    tps = [rng.uniform(5, 120) for _ in range(2000)]
    write(*[entry(upstream_model="m", duration_ms=d, tokens_per_second=t) for d, t in zip(durations, tps, strict=True)])
    filters = Filters.from_params({})
    exact = {s.upstream_model: s for s in queries.speed(filters, exact_limit=10_000)}["m"]
    approx = {s.upstream_model: s for s in queries.speed(filters, exact_limit=0)}["m"]
    assert approx.approximate and not exact.approximate and approx.count == 2000
    for metric in (LatencyRollup.Metric.DURATION, LatencyRollup.Metric.TOKENS_PER_SECOND):
        for got, want in zip(approx.percentiles[metric], exact.percentiles[metric], strict=True):
            assert want / 2 ** (1 / 4) <= got <= want * 2 ** (1 / 4)
    assert approx.percentiles[LatencyRollup.Metric.TTFT] is None


def test_bucket_bounds_hold_their_values() -> None:
    for metric in LatencyRollup.Metric:
        for value in (0, 0.005, 1, 1.5, 2, 999, 1234.5, 60_000, 10**9):
            low, high = bucket_bounds(bucket_of(value, metric), metric)
            assert low <= value < high


# ---------------------------------------------------------------------------------------------------------------
# Rollups agree with the ledger


def test_rollups_agree_with_the_ledger_on_random_rows(db: None) -> None:
    rng = random.Random(1)
    users = [User.objects.create_user(f"u{i}", password="x") for i in range(3)]
    keys = [ProxyKey.issue(user)[0] for user in users]
    rows = []
    for _ in range(400):
        i = rng.randrange(3)
        priced = rng.random() < 0.8
        rows.append(
            entry(
                started_at=NOW - timedelta(minutes=rng.randrange(60 * 24 * 9)),
                user=users[i] if rng.random() < 0.95 else None,
                key=keys[i],
                alias=rng.choice(["a", "b", ""]),
                upstream_model=rng.choice(["x", "y", ""]),
                requested_model=rng.choice(["x", "gpt-9", ""]),
                client_program=rng.choice(["Claude Code", "Codex", ""]),
                upstream=rng.choice(["up1", "up2", ""]),
                outcome=rng.choice(list(Outcome)),
                duration_ms=rng.randrange(1, 90_000),
                ttft_ms=rng.choice([None, rng.randrange(1, 5000)]),
                input_tokens=rng.choice([None, rng.randrange(5000)]),
                output_tokens=rng.choice([None, rng.randrange(500)]),
                cache_read_tokens=rng.choice([None, 0, rng.randrange(9000)]),
                cache_write_tokens=rng.choice([None, rng.randrange(900)]),
                cost_usd=Decimal(rng.randrange(10**6)) / 10**8 if priced else None,
            )
        )
    # In several batches, as the write path sends them.
    for start in range(0, len(rows), 37):
        write(*rows[start : start + 37])
    edges = {"from": f"{NOW - timedelta(days=6):%Y-%m-%d}T13:00", "to": f"{NOW - timedelta(days=1):%Y-%m-%d}T09:00"}
    group = Group.objects.create(name="team-b")
    group.user_set.add(users[1], users[2])
    cases = [{}, {"range": "24h"}, {"user": str(users[1].pk)}, {"alias": "b", "bucket": "hour"}, {"alias": ""}, edges]
    cases += [
        {"key": str(keys[0].pk)},
        {"group": str(group.pk)},
        {"upstream": "up2"},
        {"upstream_model": "y", "client_program": "Codex"},
        {"outcome": "ok"},
        {"outcome": "timeout", "alias": "a"},
        {"unrouted": "gpt-9"},
        {"range": "month"},
        {"range": "last-month"},
    ]
    for params in [*cases, {**edges, "bucket": "hour"}, {**edges, "bucket": "month"}, {"range": "30d"}]:
        filters = Filters.from_params(params)
        assert queries.totals(filters, ROLLUP) == queries.totals(filters, RAW), params
        assert queries.series(filters, ROLLUP) == queries.series(filters, RAW), params
        exact = {(s.label, s.count, s.failed) for s in queries.speed(filters, exact_limit=10**6)}
        histograms = {(s.label, s.count, s.failed) for s in queries.speed(filters, exact_limit=0)}
        assert {s for s in exact if s[1] or s[2]} == {s for s in histograms if s[1] or s[2]}, params
        for dimension in queries.DIMENSIONS:
            rolled = queries.breakdown(filters, dimension, ROLLUP)
            raw = queries.breakdown(filters, dimension, RAW)
            assert [(r.label, r.figures) for r in rolled.rows] == [(r.label, r.figures) for r in raw.rows]

    order = UsageRollup._meta.constraints[0].fields  # type: ignore[attr-defined]
    before = list(UsageRollup.objects.order_by(*order).values())
    assert rebuild_rollups() == 400
    after = list(UsageRollup.objects.order_by(*order).values())
    strip = [{k: v for k, v in row.items() if k != "id"} for row in before]
    assert strip == [{k: v for k, v in row.items() if k != "id"} for row in after]


@pytest.mark.django_db(transaction=True)
async def test_export_streams_in_chunks_under_asgi(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ASGI the rows go out chunk by chunk as they are read (Django would otherwise gather a synchronous
    iterator whole before sending it)."""
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    from usage import views

    monkeypatch.setattr(views, "EXPORT_CHUNK", 2)
    staff = await User.objects.acreate(username="boss", is_staff=True)
    await sync_to_async(write)(*[entry(requested_model=f"m{i}") for i in range(5)])
    client = AsyncClient()
    await client.aforce_login(staff)
    response: Any = await client.get("/dashboard/export.csv")
    assert response.status_code == 200 and response.is_async
    chunks = [chunk async for chunk in response.streaming_content]
    assert len(chunks) == 1 + 3  # the header, then 2 + 2 + 1 rows
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert sorted(r["requested model"] for r in rows) == ["m0", "m1", "m2", "m3", "m4"]


# ---------------------------------------------------------------------------------------------------------------
# Exchanges that matched no route are named by the model the client asked for


def unrouted(**fields: Any) -> LedgerEntry:
    defaults: dict[str, Any] = {
        "requested_model": "gpt-9-turbo",
        "outcome": Outcome.CLIENT_ERROR,
        "status": 404,
        "error_type": "not_found_error",
        "duration_ms": 3,
    }
    return entry(**{**defaults, **fields})


@pytest.mark.parametrize("exact_limit", [10_000, 0], ids=["exact", "histograms"])
def test_an_unrouted_exchange_is_named_by_the_model_asked_for(
    staff_client: Client, team: dict[str, Any], monkeypatch: pytest.MonkeyPatch, exact_limit: int
) -> None:
    monkeypatch.setattr(queries, "EXACT_PERCENTILE_ROWS", exact_limit)
    write(unrouted(user=team["bob"], key=team["bob_key"]), unrouted(), unrouted(requested_model="o9"))
    html = staff_client.get("/dashboard/").content.decode()
    for card in ("by-alias", "by-upstream_model"):
        table = html[html.index(f'id="{card}"') : html.index("</table>", html.index(f'id="{card}"'))]
        assert "gpt-9-turbo (no route)" in table and "o9 (no route)" in table, card
        assert "(none)" not in table, card
    speed = html[html.index('id="speed"') : html.index("</table>", html.index('id="speed"'))]
    assert "(none)" not in speed
    row = speed[speed.index('data-model="gpt-9-turbo (no route)"') :]
    row = row[: row.index("</tr>")]
    assert 'data-metric="failed">2<' in row
    recent = html[html.index('id="recent"') :]
    assert recent.count('o9 <span class="muted">(no route)</span>') == 1
    assert recent.count('gpt-9-turbo <span class="muted">(no route)</span>') == 2

    filters = Filters.from_params({})
    by_model = {row.label: row.figures.requests for row in queries.breakdown(filters, "upstream_model").rows}
    assert by_model == {"claude-sonnet-4": 3, "qwen3-coder": 2, "gpt-9-turbo (no route)": 2, "o9 (no route)": 1}
    by_alias = {row.label: row.figures.errors for row in queries.breakdown(filters, "alias", RAW).rows}
    assert by_alias == {"sonnet": 0, "local": 1, "gpt-9-turbo (no route)": 2, "o9 (no route)": 1}


def test_a_routed_exchange_without_an_alias_is_not_called_unrouted(db: None) -> None:
    write(entry(requested_model="ollama/llama3.2", upstream="ollama", upstream_model="llama3.2"))
    (row,) = queries.breakdown(Filters.from_params({}), "alias").rows
    assert row.label == "(no alias)" and not row.unrouted
    (speed,) = queries.speed(Filters.from_params({}))
    assert speed.label == "llama3.2"


# ---------------------------------------------------------------------------------------------------------------
# Filters on every dimension, month ranges, sorted breakdowns whose rows link to their own view


@pytest.mark.parametrize(
    ("params", "requests", "errors", "input_tokens"),
    [
        ({"outcome": "upstream_error"}, 1, 1, 0),
        ({"outcome": "ok"}, 3, 0, 1110),
        ({"upstream": "ollama"}, 2, 1, 1000),
        ({"upstream_model": "claude-sonnet-4"}, 3, 0, 117),
        ({"client_program": "Codex"}, 2, 1, 1000),
        ({"client_program": "Claude Code", "outcome": "cancelled"}, 0, 0, 0),
    ],
)
def test_each_filter_narrows_the_page(
    staff_client: Client, team: dict[str, Any], params: dict[str, str], requests: int, errors: int, input_tokens: int
) -> None:
    html = staff_client.get("/dashboard/", params).content.decode()
    assert (figure(html, "requests"), figure(html, "errors")) == (str(requests), str(errors))
    assert figure(html, "input_tokens") == str(input_tokens)
    for name, value in params.items():
        assert re.search(rf'<select name="{name}">[\s\S]*?<option value="{re.escape(value)}" selected>', html), name
    assert 'id="clear-filters"' in html
    exported = read_csv(staff_client.get("/dashboard/export.csv", params))
    assert len(exported) == requests


def test_key_and_group_filters(staff_client: Client, team: dict[str, Any]) -> None:
    extra_key, _ = ProxyKey.issue(team["alice"], label="desktop")
    write(entry(user=team["alice"], key=extra_key, alias="sonnet", input_tokens=5, cost_usd=Decimal(2)))
    html = staff_client.get(f"/dashboard/?key={extra_key.pk}").content.decode()
    assert figure(html, "requests") == "1" and figure(html, "input_tokens") == "5"
    assert f"{extra_key.prefix}… desktop (alice)</strong>" in html  # the view says what it shows
    html = staff_client.get(f"/dashboard/?key={team['alice_key'].pk}").content.decode()
    assert figure(html, "requests") == "3"

    platform = Group.objects.create(name="platform")
    platform.user_set.add(team["bob"])
    html = staff_client.get(f"/dashboard/?group={platform.pk}").content.decode()
    assert figure(html, "requests") == "2" and figure(html, "errors") == "1"
    assert f'<option value="{platform.pk}" selected>platform</option>' in html
    platform.user_set.add(team["alice"])
    html = staff_client.get(f"/dashboard/?group={platform.pk}").content.decode()
    assert figure(html, "requests") == "6"
    speed = html[html.index('id="speed"') : html.index("</table>", html.index('id="speed"'))]
    assert 'data-model="claude-sonnet-4"' in speed and 'data-model="qwen3-coder"' in speed


def test_an_unknown_outcome_is_ignored_and_said(staff_client: Client, team: dict[str, Any]) -> None:
    html = staff_client.get("/dashboard/?outcome=exploded").content.decode()
    assert figure(html, "requests") == "5"
    assert "Ignored an unknown outcome." in html


def test_this_month_and_last_month(db: None) -> None:
    now = datetime(2026, 3, 14, 10, 30, tzinfo=UTC)
    this = Filters.from_params({"range": "month"}, now=now)
    assert (this.start, this.end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert this.bucket == "day"
    last = Filters.from_params({"range": "last-month"}, now=now)
    assert (last.start, last.end) == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    january = Filters.from_params({"range": "last-month"}, now=datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
    assert (january.start, january.end) == (datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    december = Filters.from_params({"range": "month"}, now=datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert (december.start, december.end) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def test_month_presets_on_the_page(staff_client: Client, db: None) -> None:
    month_start = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    write(
        entry(started_at=month_start + timedelta(minutes=1), input_tokens=1),
        entry(started_at=month_start - timedelta(minutes=1), input_tokens=20),
        entry(started_at=month_start - timedelta(days=40), input_tokens=300),
    )
    html = staff_client.get("/dashboard/?range=month").content.decode()
    assert figure(html, "input_tokens") == "1"
    assert ">this month</a>" in html and ">last month</a>" in html
    html = staff_client.get("/dashboard/?range=last-month").content.decode()
    assert figure(html, "input_tokens") == "20"


def breakdown_labels(html: str, card: str) -> list[str]:
    table = html[html.index(f'id="{card}"') : html.index("</table>", html.index(f'id="{card}"'))]
    body = table[table.index("<tbody>") :]
    return re.findall(r'<tr>\s*<td title="([^"]*)"', body)


def test_breakdowns_sort_by_cost_unless_asked(staff_client: Client, team: dict[str, Any]) -> None:
    # Bob made 2 requests, all unpriced; carol 1 request that cost the most; alice 3 that cost less.
    carol = User.objects.create_user("carol")
    write(entry(user=carol, alias="sonnet", upstream_model="claude-sonnet-4", cost_usd=Decimal("0.5")))
    html = staff_client.get("/dashboard/").content.decode()
    assert breakdown_labels(html, "by-user") == ["carol", "alice", "bob"]
    assert 'aria-sort="descending"><a href="?range=7d#by-user" data-sort="cost"' in html
    html = staff_client.get("/dashboard/?sort=requests").content.decode()
    assert breakdown_labels(html, "by-user") == ["alice", "bob", "carol"]
    html = staff_client.get("/dashboard/?sort=errors").content.decode()
    assert breakdown_labels(html, "by-user")[0] == "bob"
    html = staff_client.get("/dashboard/?sort=name").content.decode()
    assert breakdown_labels(html, "by-user") == ["alice", "bob", "carol"]
    assert breakdown_labels(html, "by-alias") == ["local", "sonnet"]
    # A filter keeps the sort, and the sort keeps the filters.
    html = staff_client.get("/dashboard/?sort=errors&alias=sonnet").content.decode()
    assert 'name="sort" value="errors"' in html
    assert 'href="?range=7d&amp;alias=sonnet&amp;sort=requests#by-user"' in html


def test_breakdown_rows_link_to_their_own_view(staff_client: Client, team: dict[str, Any]) -> None:
    write(unrouted(user=team["bob"], key=team["bob_key"]))
    html = staff_client.get("/dashboard/").content.decode()
    expected = {
        "by-user": f"user={team['bob'].pk}",
        "by-key": f"key={team['bob_key'].pk}",
        "by-alias": "alias=local",
        "by-upstream_model": "upstream_model=qwen3-coder",
        "by-client_program": "client_program=Codex",
    }
    for card, param in expected.items():
        table = html[html.index(f'id="{card}"') : html.index("</table>", html.index(f'id="{card}"'))]
        link = re.search(rf'<a href="\?([^"]*{re.escape(param)}[^"]*)" title="Show only this">', table)
        assert link, card
        linked = staff_client.get("/dashboard/?" + link.group(1).replace("&amp;", "&")).content.decode()
        assert figure(linked, "requests") == ("3" if card == "by-user" or card == "by-key" else "2"), card
    unrouted_link = re.search(r'<a href="\?([^"]*unrouted=gpt-9-turbo[^"]*)"', html)
    assert unrouted_link
    linked = staff_client.get("/dashboard/?" + unrouted_link.group(1).replace("&amp;", "&")).content.decode()
    assert figure(linked, "requests") == "1" and figure(linked, "errors") == "1"


def test_the_errors_panel_groups_failures_with_their_latest_message(staff_client: Client) -> None:
    busy = {"upstream": "up-a", "alias": "smart", "outcome": Outcome.UPSTREAM_ERROR, "status": 503}
    write(
        entry(**busy, error_type="overloaded", error_message="up-a: busy", started_at=NOW - timedelta(hours=3)),
        entry(**busy, error_type="overloaded", error_message="up-a: still busy", started_at=NOW - timedelta(hours=2)),
        entry(
            upstream="up-b",
            alias="fast",
            outcome=Outcome.CLIENT_ERROR,
            status=400,
            error_type="invalid_request",
            error_message="messages: required",
        ),
        entry(upstream="up-b", alias="fast", outcome=Outcome.CANCELLED, status=499),  # not a failure
        entry(upstream="up-b", alias="fast"),
    )
    page = staff_client.get("/dashboard/?range=24h").content.decode()
    cells = [cell for row in section_rows(page, "errors") for cell in row]
    assert [c for c in cells if not re.match(r"\d{4}-", c)] == [
        "up-a",
        "smart",
        "503",
        "overloaded",
        "2",
        "up-a: still busy",
        "up-b",
        "fast",
        "400",
        "invalid_request",
        "1",
        "messages: required",
    ]


def test_sessions_sum_each_coding_agent_session(staff_client: Client, staff: User) -> None:
    other = User.objects.create_user("bob", password=None)
    write(
        entry(
            user=staff,
            client_session="sess-1",
            client_program="claude-cli",
            input_tokens=100,
            output_tokens=20,
            cost_usd=Decimal("0.01"),
            started_at=NOW - timedelta(hours=3),
        ),
        entry(
            user=staff,
            client_session="sess-1",
            client_program="claude-cli",
            input_tokens=50,
            output_tokens=10,
            cost_usd=Decimal("0.02"),
            started_at=NOW - timedelta(hours=2),
            duration_ms=60_000,
        ),
        entry(
            user=other,
            client_session="sess-2",
            client_program="codex_exec",
            input_tokens=7,
            output_tokens=3,
            outcome=Outcome.UPSTREAM_ERROR,
            status=502,
        ),
        entry(user=other, client_session="", input_tokens=1),  # no session: not listed
    )
    page = staff_client.get("/dashboard/sessions/?range=24h").content.decode()
    cells = section_rows(page, "sessions")
    assert [c[:9] for c in cells] == [
        ["sess-2", "bob", "codex_exec", "unpriced", "1", "1", "7", "3", "0"],
        ["sess-1", staff.username, "claude-cli", "$0.03", "2", "0", "150", "30", "0"],
    ]
    assert cells[1][9] == "61 min 0 s"  # from the first start to the last end
    # A teammate sees only their own.
    bob = Client()
    bob.force_login(other)
    mine = bob.get("/me/sessions/?range=24h").content.decode()
    assert "sess-2" in mine and "sess-1" not in mine
    assert bob.get("/dashboard/sessions/").status_code == 403


def test_the_users_page_links_to_their_sessions(staff_client: Client) -> None:
    page = staff_client.get("/me/").content.decode()
    assert 'href="/me/sessions/?range=30d"' in page
    assert staff_client.get("/me/sessions/?range=30d").status_code == 200


def test_a_users_view_of_the_dashboard_links_to_their_sessions(staff_client: Client, staff: User) -> None:
    bob = User.objects.create_user("bob", password=None)
    write(
        entry(user=staff, client_session="sess-boss", client_program="claude-cli"),
        entry(user=bob, client_session="sess-bob", client_program="codex_exec"),
    )
    html = staff_client.get(f"/dashboard/?range=24h&user={bob.pk}").content.decode()
    link = re.search(r'id="sessions-link" href="([^"]+)"', html)
    assert link
    page = staff_client.get(link.group(1).replace("&amp;", "&")).content.decode()
    assert [row[:2] for row in section_rows(page, "sessions")] == [["sess-bob", "bob"]]
    # Its other ranges keep to bob; its times follow the reader's UTC / local switch, as every page's do.
    assert f'href="?range=7d&amp;user={bob.pk}">Last 7 days</a>' in page
    assert 'id="local-time"' in page and "/static/usage/times.js" in page
