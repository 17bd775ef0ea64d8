"""Every robustness group ends without a traceback, a changed input, a leftover file, an HTTP 500 or a
non-finite result (the cases and how they are judged: harness.py)."""

from __future__ import annotations

import harness
import pytest
from lanes import balanced_lanes, typical_seconds

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("group", list(harness.GROUPS))
def test_group_has_no_failing_case(group: str, robustness_lanes) -> None:
    record = robustness_lanes.wait(group)
    results = [harness.Result(**r) for r in record["results"]]
    assert results, f"{group}: no case ran"
    failing = [r for r in results if not r.ok]
    assert not failing, f"{len(failing)} of {len(results)} {group} cases failed:\n" + "\n".join(
        f"{r.case}: exit {r.status}, traceback {r.traceback}, input unchanged {r.input_unchanged}, "
        f"leftovers {r.leftovers[:3]}, non-finite {r.nonfinite}: {r.note}"
        for r in failing
    )


def test_lanes_hold_every_group_once_and_balance_the_work() -> None:
    lanes = balanced_lanes(list(harness.GROUPS))
    assert sorted(g for lane in lanes for g in lane) == sorted(harness.GROUPS)
    totals = [sum(typical_seconds(g) for g in lane) for lane in lanes]
    assert max(totals) - min(totals) <= max(typical_seconds(g) for g in harness.GROUPS)


def test_a_failing_case_is_reported_as_not_ok() -> None:
    # The judge itself: each way a case can fail makes it fail.
    good = harness.Result("g", "c", 0, False, True)
    assert good.ok
    for change in (
        {"traceback": True},
        {"input_unchanged": False},
        {"leftovers": ["x"]},
        {"status": 500},
        {"nonfinite": True},
    ):
        assert not harness.Result(**{**good.__dict__, **change}).ok, change
