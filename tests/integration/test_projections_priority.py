"""The projections' process yields the CPU to the hub's: a till waits for the hub's answer, a
balance may follow a few tenths of a second later (issue 18)."""

from __future__ import annotations

import psutil

from hub.runner.projector import PROJECTIONS_NICE
from hub.service.typedefs import SEAT
from tests.conftest import Hub


async def test_the_projections_run_at_a_lower_priority_than_the_hub_and_still_keep_up(hub: Hub) -> None:
    await hub.account("S001", cash=1234)
    await hub.settle()  # the projections' process is running its views
    child = hub.app[SEAT].active().projector._process.pid  # noqa: SLF001 - the projections' process
    assert psutil.Process(child).nice() == min(19, psutil.Process().nice() + PROJECTIONS_NICE)
    assert (await hub.balance("S001"))["cash"] == 1234
