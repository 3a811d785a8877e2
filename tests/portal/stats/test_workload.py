"""Workload statistics against counts computed independently from the dataset's specification."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.db import db
from portal.stats.services import (
    Dimension,
    Granularity,
    StatsError,
    StatsQuery,
    business_types,
    local_midnight,
    period_keys,
    workload,
)
from tests.conftest import login
from tests.portal.stats.conftest import NOV, Dataset, Spec

NOV_END = date(2026, 11, 30)


def nov(**changes: object) -> StatsQuery:
    values: dict[str, object] = {"start": NOV, "end": NOV_END, "range": "custom"}
    values.update(changes)
    return StatsQuery(**values)  # type: ignore[arg-type]


def p(values: list[float], q: float) -> float | None:
    """Independent percentile: statistics.quantiles' inclusive method is linear interpolation."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    if q == 0.5:
        return statistics.median(values)
    return statistics.quantiles(values, n=10, method="inclusive")[int(q * 10) - 1]


def expect(specs: list[Spec], offices: set[str], start: date = NOV, end: date = NOV_END, **where: object) -> dict:
    lo, hi = local_midnight(start), local_midnight(end + timedelta(days=1))
    chosen = [s for s in specs if s.office in offices and lo <= s.accepted < hi and not s.withdrawn
              and all(getattr(s, k) == v for k, v in where.items())]
    delays = sorted(s.delay.total_seconds() for s in chosen if s.delay is not None)
    return {
        "businesses": len(chosen),
        "captured": sum(s.captured for s in chosen),
        "complete": sum(s.complete for s in chosen),
        "pages": sum(s.pages for s in chosen),
        "on_time": sum(s.complete and s.delay <= timedelta(minutes=60) for s in chosen),
        "supplemented": sum(bool(s.supplemental) for s in chosen),
        "median_delay": p(delays, 0.5),
        "p90_delay": p(delays, 0.9),
    }


def actual(row) -> dict:  # type: ignore[no-untyped-def]
    return {k: getattr(row, k) for k in (
        "businesses", "captured", "complete", "pages", "on_time", "supplemented", "median_delay", "p90_delay")}


def close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (a[k] is None and b[k] is None) or (a[k] is not None and b[k] is not None and abs(a[k] - b[k]) < 0.01)
        for k in a)


def test_department_drill_down_matches_independent_counts(dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1)
    result = workload(supervisor, nov())
    by_key = {r.key: r for r in result.rows}
    assert [r.label for r in result.rows] == ["甲登记点", "乙登记点"]  # D1's offices; nothing on D1 itself
    assert close(actual(by_key[org.office_a.id]), expect(dataset.specs, {"a"}))
    assert close(actual(by_key[org.office_b.id]), expect(dataset.specs, {"b"}))
    assert close(actual(result.total), expect(dataset.specs, {"a", "b"}))
    # Spot checks written out by hand, so that the independent computation is itself checked.
    a = by_key[org.office_a.id]
    assert (a.businesses, a.captured, a.complete, a.pages, a.on_time, a.supplemented) == (4, 3, 2, 11, 1, 1)
    assert result.total.median_delay == 7200.0 and result.total.p90_delay == pytest.approx(10080.0)
    assert a.completeness_rate == 0.5 and a.supplemental_rate == pytest.approx(1 / 3)
    # Offices are leaves: their drill-down goes to windows.
    assert by_key[org.office_a.id].drill == {"range": "custom", "start": "2026-11-01", "end": "2026-11-30",
                                             "by": "window", "department": org.office_a.id}

    hq = factory.user("supervisor", org.hq)
    city = workload(hq, nov())
    assert [r.label for r in city.rows] == ["一支队", "二支队"]
    assert close(actual(city.rows[1]), expect(dataset.specs, {"c"}))
    assert city.rows[0].drill["by"] == "department"
    assert close(actual(city.total), expect(dataset.specs, {"a", "b", "c"}))
    # Drilling from HQ into detachment 1 gives D1's table.
    drilled = workload(hq, nov(department_id=org.det1.id))
    assert [actual(r) for r in drilled.rows] == [actual(r) for r in result.rows]
    assert [label for label, _ in drilled.breadcrumbs] == ["总队", "一支队"]


def test_department_table_of_an_office_is_the_office_itself(dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1)
    result = workload(supervisor, nov(department_id=org.office_a.id))
    assert [r.label for r in result.rows] == ["甲登记点（本级）"]
    assert close(actual(result.rows[0]), expect(dataset.specs, {"a"}))
    assert close(actual(result.total), expect(dataset.specs, {"a"}))


def test_windows_then_clerks(dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1)
    windows = workload(supervisor, nov(dimension=Dimension.WINDOW, department_id=org.office_a.id))
    by_key = {r.key: r for r in windows.rows}
    # b2's supplemental pages were scanned at window b, but it belongs to the window of its capture.
    assert close(actual(by_key[org.window_a.id]), expect(dataset.specs, {"a"}, window="a"))
    assert close(actual(by_key[None]), expect(dataset.specs, {"a"}, window=None))
    assert by_key[None].label == "未采集（无窗口）"
    assert org.window_b.id not in by_key  # another office's window
    clerks = workload(supervisor, nov(dimension=Dimension.CLERK, department_id=org.office_a.id,
                                      window_id=org.window_a.id))
    rows = {r.key: r for r in clerks.rows}
    assert set(rows) == {"K1", "K2"}
    assert close(actual(rows["K1"]), expect(dataset.specs, {"a"}, window="a", clerk="K1"))
    assert close(actual(rows["K2"]), expect(dataset.specs, {"a"}, window="a", clerk="K2"))
    assert rows["K1"].label == "民警K1（K1）"
    assert [label for label, _ in clerks.breadcrumbs] == ["一支队", "甲登记点", "1号窗口"]


def test_business_types_and_reasons(dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1)
    result = workload(supervisor, nov(dimension=Dimension.BUSINESS_TYPE))
    by_label = {r.label: r for r in result.rows}
    for label, code in (("注册登记", "REGISTER"), ("转移登记", "TRANSFER"), ("失窃登记", "THEFT")):
        assert close(actual(by_label[label]), expect(dataset.specs, {"a", "b"}, type_code=code)), label
    assert by_label["锁定/解锁"].businesses == 0  # every active type is listed
    reasons = {r.reason: (r.pages, r.businesses) for r in result.reasons}
    assert reasons["poor_quality"] == (1, 1) and reasons["missing_page"] == (1, 1)
    assert reasons["wrong_page"] == (0, 0)


def test_department_by_business_type(dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1)
    result = workload(supervisor, nov(dimension=Dimension.DEPARTMENT_TYPE))
    by_key = {r.key: r for r in result.rows}
    pairs = {(s.office, s.type_code) for s in dataset.specs if s.office in {"a", "b"}}
    types = {bt.code: bt.id for bt in business_types()}
    for office, code in pairs:
        row = by_key[(dataset.offices[office].id, types[code])]
        assert close(actual(row), expect(dataset.specs, {office}, type_code=code)), (office, code)
        assert row.label == f"{dataset.offices[office].name} · {row.label.split(' · ')[1]}"
        assert row.drill == {"range": "custom", "by": "window", "start": "2026-11-01", "end": "2026-11-30",
                             "department": dataset.offices[office].id, "type": types[code]}
    assert all(r.businesses for r in result.rows)  # empty pairs are left out
    assert close(actual(result.total), expect(dataset.specs, {"a", "b"}))


def test_business_type_filter(dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1)
    register = dataset.spec("b1").business.business_type_id
    result = workload(supervisor, nov(business_type_id=register))
    by_key = {r.key: r for r in result.rows}
    assert close(actual(by_key[org.office_a.id]), expect(dataset.specs, {"a"}, type_code="REGISTER"))
    assert close(actual(result.total), expect(dataset.specs, {"a", "b"}, type_code="REGISTER"))
    assert ("业务类型", "注册登记") in result.parameters()
    assert StatsQuery.from_args({"type": str(register)}).as_args()["type"] == register


def test_periods_are_local_days_weeks_and_months(dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1)
    days = workload(supervisor, nov(dimension=Dimension.PERIOD, granularity=Granularity.DAY))
    assert [r.key for r in days.rows] == period_keys(NOV, NOV_END, Granularity.DAY)
    assert len(days.rows) == 30
    counts = {r.key: r.businesses for r in days.rows if r.businesses}
    assert counts == {"2026-11-02": 2, "2026-11-03": 1, "2026-11-04": 1, "2026-11-05": 1, "2026-11-30": 1}
    weeks = workload(supervisor, nov(dimension=Dimension.PERIOD, granularity=Granularity.WEEK))
    assert [r.key for r in weeks.rows] == ["2026-10-26", "2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23",
                                           "2026-11-30"]
    assert {r.key: r.businesses for r in weeks.rows if r.businesses} == {"2026-11-02": 5, "2026-11-30": 1}
    months = workload(supervisor, StatsQuery(start=date(2026, 10, 1), end=date(2026, 12, 31), range="custom",
                                             dimension=Dimension.PERIOD, granularity=Granularity.MONTH))
    assert {r.key: r.businesses for r in months.rows} == {"2026-10": 2, "2026-11": 6, "2026-12": 1}


def test_period_bounds_are_inclusive_local_days(dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1)
    # B9 at 23:59:59 on the last day is in; B10 at midnight after it and B11 just before the first day are out.
    last_day = workload(supervisor, nov(start=NOV_END, end=NOV_END, dimension=Dimension.BUSINESS_TYPE))
    assert last_day.total.businesses == 1
    first_day = workload(supervisor, nov(start=NOV, end=NOV, dimension=Dimension.BUSINESS_TYPE))
    assert first_day.total.businesses == 0 and first_day.empty
    october_31 = workload(supervisor, nov(start=date(2026, 10, 31), end=date(2026, 10, 31)))
    assert october_31.total.businesses == 2  # B7 and B11


def test_days_follow_the_servers_time_zone(factory, org, monkeypatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        # 01:00 on the 3rd and 23:59 on the 2nd in Beijing time.
        factory.business(org.office_a, serial="TZ1", accepted_at=datetime(2026, 11, 2, 17, 0, tzinfo=UTC))
        factory.business(org.office_a, serial="TZ2", accepted_at=datetime(2026, 11, 2, 15, 59, tzinfo=UTC))
        supervisor = factory.user("supervisor", org.det1)
        days = workload(supervisor, nov(dimension=Dimension.PERIOD, granularity=Granularity.DAY))
        assert {r.key: r.businesses for r in days.rows if r.businesses} == {"2026-11-02": 1, "2026-11-03": 1}
        assert workload(supervisor, nov(start=date(2026, 11, 3), end=date(2026, 11, 3))).total.businesses == 1
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(("args", "message"), [
    ({"range": "custom", "start": "2026-11-30", "end": "2026-11-01"}, "结束日期不能早于开始日期"),
    ({"range": "custom", "start": "2026-11-01"}, "请填写开始日期和结束日期"),
    ({"range": "custom", "start": "2026-13-01", "end": "2026-12-01"}, "开始日期格式无效"),
    ({"range": "custom", "start": "2020-01-01", "end": "2026-11-01", "by": "period", "granularity": "day"},
     "按日统计的时间范围不能超过 366 天"),
    ({"range": "custom", "start": "1900-01-01", "end": "2026-11-01"}, "不能超过 3660 天"),
    ({"by": "nonsense"}, "统计维度取值无效"),
])
def test_bad_input_gets_a_clear_message(client, factory, org, args: dict, message: str) -> None:
    supervisor = factory.user("supervisor", org.det1)
    query = StatsQuery.from_args(args, today=date(2026, 11, 23))
    assert any(message in e for e in query.errors), query.errors
    with pytest.raises(StatsError):
        workload(supervisor, query)
    login(client, supervisor.username)
    response = client.get("/stats/report", query_string=args)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)


def test_presets_and_defaults() -> None:
    today = date(2026, 11, 25)  # a Wednesday
    assert (StatsQuery.from_args({}, today).start, StatsQuery.from_args({}, today).end) == (NOV, today)
    week = StatsQuery.from_args({"range": "this_week"}, today)
    assert (week.start, week.end) == (date(2026, 11, 23), today)
    last_30 = StatsQuery.from_args({"range": "last_30"}, today)
    assert (last_30.end - last_30.start).days == 29 and not last_30.errors


class TableParser(HTMLParser):
    """Cells of #stats-table keyed by the row's data-key and the cell's data-col."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self._row: str | None = None
        self._col: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "tr" and "data-key" in a:
            self._row = a["data-key"]
            self.rows[self._row] = {}
        elif tag == "td" and self._row is not None and "data-col" in a:
            self._col = a["data-col"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._col = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._col is not None:
            self.rows[self._row][self._col] = self.rows[self._row].get(self._col, "") + data.strip()


def test_report_page_shows_the_numbers_and_scopes_departments(client, dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1)
    login(client, supervisor.username)
    args = {"range": "custom", "start": "2026-11-01", "end": "2026-11-30", "by": "department"}
    response = client.get("/stats/report", query_string=args)
    assert response.status_code == 200
    parser = TableParser()
    parser.feed(response.get_data(as_text=True))
    e = expect(dataset.specs, {"a"})
    row = parser.rows[str(org.office_a.id)]
    assert [row["businesses"], row["complete"], row["pages"]] == [str(e["businesses"]), str(e["complete"]),
                                                                  str(e["pages"])]
    assert row["completeness_rate"] == "50.0%"
    assert parser.rows["total"]["median_delay"] == "2小时0分"
    assert str(org.office_c.id) not in parser.rows
    # Outside the subtree: not found, also as a window.
    assert client.get("/stats/report", query_string={**args, "department": org.office_c.id}).status_code == 404
    assert client.get("/stats/report", query_string={**args, "by": "clerk", "window": org.window_c.id}
                      ).status_code == 404
    # An HTMX request gets the fragment only.
    fragment = client.get("/stats/report", query_string=args, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'id="stats-table"' in fragment and "<html" not in fragment
    cross = TableParser()
    cross.feed(client.get("/stats/report", query_string={**args, "by": "department_type"}).get_data(as_text=True))
    register = next(bt.id for bt in business_types() if bt.code == "REGISTER")
    e = expect(dataset.specs, {"a"}, type_code="REGISTER")
    assert cross.rows[f"{org.office_a.id}-{register}"]["businesses"] == str(e["businesses"])
    empty = client.get("/stats/report", query_string={**args, "start": "2025-01-01", "end": "2025-01-31"})
    assert empty.status_code == 200 and "该时段内没有符合条件的业务" in empty.get_data(as_text=True)
    db.session.rollback()
    # Every answered table is audited with its question; refused ones (404) are not answers.
    viewed = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "stats.viewed")
                                .order_by(AuditEntry.seq)).all()
    assert [e.object_id for e in viewed] == ["department", "department", "department_type", "department"]
    assert {e.user_id for e in viewed} == {supervisor.id}
    assert '"start":"2026-11-01"' in viewed[0].detail and '"end":"2026-11-30"' in viewed[0].detail


def test_statistics_need_the_permission(client, factory, org) -> None:
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    assert client.get("/stats/").status_code == 403
    assert client.get("/stats/report").status_code == 403
    assert client.get("/stats/export.xlsx").status_code == 403
    assert client.get("/stats/live").status_code == 286
