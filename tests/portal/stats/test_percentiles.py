"""Median and p90 from the delay histogram (the statistics' display units) against exact ones."""

from __future__ import annotations

import math
from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from portal.stats.services import DAY_SECONDS, DelayBucket, bucket_percentile, merge_buckets


def exact(values: list[float], q: float) -> float:
    """percentile_cont, written out independently."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def unit(seconds: float) -> int:
    return int(seconds // 60) if seconds < DAY_SECONDS else 1440 + int((seconds - DAY_SECONDS) // 3600)


def histogram(values: list[float]) -> list[DelayBucket]:
    groups: dict[int, list[float]] = defaultdict(list)
    for v in values:
        groups[unit(v)].append(v)
    return [DelayBucket(k, len(v), sum(v) / len(v)) for k, v in sorted(groups.items())]


delays = st.lists(st.floats(min_value=0, max_value=5 * DAY_SECONDS, allow_nan=False), min_size=1, max_size=300)


def width(seconds: float) -> int:
    return 60 if seconds < DAY_SECONDS else 3600


@given(delays)
def test_within_the_wider_of_the_two_units_interpolated(values: list[float]) -> None:
    """Each delay stands for its unit's mean (off by less than the unit), so the interpolation
    between two ranks is off by at most the wider of their units."""
    buckets = histogram(values)
    ordered = sorted(values)
    for q in (0.5, 0.9):
        got = bucket_percentile(buckets, q)
        assert got is not None
        position = q * (len(ordered) - 1)
        low, high = ordered[math.floor(position)], ordered[math.ceil(position)]
        assert abs(got - exact(values, q)) <= max(width(low), width(high))


def test_interpolating_across_the_day_boundary() -> None:
    """The example hypothesis found: half-way between 0 s and an hour bucket beyond a day."""
    values = [0.0, 0.0, 90_000.0, 90_241.0]
    got = bucket_percentile(histogram(values), 0.5)
    assert got == 0.5 * (90_000.0 + 90_241.0) / 2  # the hour bucket's mean, half-way
    assert 60 < abs(got - exact(values, 0.5)) <= 3600


@given(st.lists(st.integers(min_value=0, max_value=3 * 1440), min_size=1, max_size=200))
def test_exact_when_each_unit_holds_one_delay(minutes: list[int]) -> None:
    values = [m * 60.0 for m in minutes]  # whole minutes: one distinct delay per unit under a day
    values = [v for v in values if v < DAY_SECONDS] or [0.0]
    for q in (0.5, 0.9):
        assert bucket_percentile(histogram(values), q) == exact(values, q)


def test_merging_groups_equals_the_histogram_of_all() -> None:
    a, b = [60.0, 120.0, 125.0, 90_000.0], [61.0, 3_600.0]
    merged = merge_buckets([histogram(a), histogram(b)])
    assert merged == histogram(a + b)
    assert bucket_percentile(merged, 0.5) == exact([60.0, 61.0, 122.5, 122.5, 3600.0, 90_000.0], 0.5)


def test_no_delays_no_percentile() -> None:
    assert bucket_percentile([], 0.5) is None
