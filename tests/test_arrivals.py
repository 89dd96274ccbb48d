"""The arrival model's rate profile, fitted and sampled on hand-built submit times."""

from __future__ import annotations

import numpy as np
import pytest
from autoflow.generators.arrivals import DAY, HOUR, WEEK, ArrivalModel


def busy_weekdays(weeks: int) -> np.ndarray:
    """Submit times from t=0 for ``weeks`` weeks: every 120 s on days 0-4 of each week
    (30 an hour), every 1200 s on days 5 and 6 (3 an hour)."""
    t, x = [], 0.0
    while x < weeks * WEEK:
        t.append(x)
        x += 120.0 if (x % WEEK) // DAY < 5 else 1200.0
    return np.array(t)


def test_weekly_profile_is_fitted_from_a_trace_of_a_week_or_more():
    m = ArrivalModel().fit(busy_weekdays(3))
    assert m.period == WEEK
    rate = m.rate.reshape(7, 24) * HOUR  # arrivals per hour, by day of week and hour
    # each weekday hour saw 30 arrivals in each of the 3 weeks over 3 hours of exposure
    assert rate[:5] == pytest.approx(np.full((5, 24), 30.0))
    # weekend hours: 3 an hour; the very last hour of the trace ends at its last arrival,
    # 1200 s before the third week's end: 9 arrivals over 2 x 3600 + 2400 s -> 3.375/h
    assert rate[5:].ravel()[:-1] == pytest.approx(np.full(47, 3.0))
    assert rate[6, 23] == pytest.approx(9 / 9600 * HOUR)
    # every hour of the day has the same mix of days: a flat share by hour of day (hour
    # 23 is 0.375/156 higher, from that last hour)
    assert m.hourly_profile() == pytest.approx(np.full(24, 1 / 24), rel=0.003)


def test_samples_follow_the_weekly_profile():
    m = ArrivalModel().fit(busy_weekdays(3))
    # a week holds 5 x 24 x 30 + 2 x 24 x 3 = 3,744 expected arrivals; sample two weeks'
    # worth: each weekday gets 720/3744 = 5/26 of them, each weekend day 1/52
    s = m.sample(2 * 3744, np.random.default_rng(0))
    assert s[0] == 0.0 and (np.diff(s) >= 0).all()
    assert s[-1] == pytest.approx(2 * WEEK, rel=0.01)
    share = np.bincount((np.mod(s, WEEK) // DAY).astype(int), minlength=7) / s.size
    assert share[:5] == pytest.approx(np.full(5, 5 / 26), abs=0.005)
    assert share[5:] == pytest.approx(np.full(2, 1 / 52), abs=0.005)
    # twice the load: the same profile, the same jobs in half the time
    s2 = m.sample(2 * 3744, np.random.default_rng(0), load_scale=2.0)
    assert s2[-1] == pytest.approx(WEEK, rel=0.01)
    share2 = np.bincount((np.mod(s2, WEEK) // DAY).astype(int), minlength=7) / s2.size
    assert share2 == pytest.approx(share, abs=0.005)


def test_a_trace_shorter_than_a_week_gets_a_daily_profile():
    # 3 days: every 60 s in hours 0-11, every 600 s in hours 12-23
    t, x = [], 0.0
    while x < 3 * DAY:
        t.append(x)
        x += 60.0 if (x % DAY) // HOUR < 12 else 600.0
    m = ArrivalModel().fit(np.array(t))
    assert m.period == DAY and m.rate.size == 24
    assert m.rate[:12] * HOUR == pytest.approx(np.full(12, 60.0))
    # a day holds 12 x 60 + 12 x 6 = 792 arrivals: 60/792 of them in each busy hour
    assert m.hourly_profile()[:12] == pytest.approx(np.full(12, 60 / 792), rel=1e-3)
