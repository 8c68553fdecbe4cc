"""Two hub processes on one PostgreSQL and a sender on both: rounds of kill -9 of either hub, both, or the
sender, at random moments while alerts are committed; zero lost, zero duplicated."""

from __future__ import annotations

import random
import time

import pytest

from sync.harness import wait_for
from tests.pg_rig import MultiHubRig
from tests.test_central_pg_hubs import _assert_exactly_once

pytestmark = pytest.mark.postgres


@pytest.fixture
def hubs(pg, tmp_path):
    url = pg.create_db("kill")
    r = MultiHubRig(tmp_path / "rig", url, hubs=2)
    yield r
    r.stop_all()
    pg.drop_db(url)


def test_kill9_random_hub_or_sender_rounds_zero_lost_zero_duplicated(hubs):
    rng = random.Random(10)
    hubs.start_hub(0)
    hubs.start_hub(1)
    hubs.start_sender()
    ids: list[str] = []
    rounds = 0
    deadline = time.monotonic() + 50
    while rounds < 50 and time.monotonic() < deadline:
        ids += hubs.rig.add_alerts(rng.randint(5, 40))
        time.sleep(rng.uniform(0.02, 0.3))
        what = rng.random()
        if what < 0.3:
            hubs.rig.kill(hubs.rig.senders["CP-01"])
            ids += hubs.rig.add_alerts(rng.randint(0, 10))
            hubs.start_sender(wait=rng.random() < 0.5)
        elif what < 0.85:  # one hub dies and comes back; the other keeps serving meanwhile
            i = rng.randrange(2)
            hubs.kill_hub(i)
            ids += hubs.rig.add_alerts(rng.randint(0, 10))
            time.sleep(rng.uniform(0, 0.3))
            hubs.start_hub(i)
        else:  # both die at once
            hubs.kill_hub(0)
            hubs.kill_hub(1)
            ids += hubs.rig.add_alerts(rng.randint(0, 10))
            for i in rng.sample([0, 1], 2):  # back in either order
                hubs.start_hub(i)
        rounds += 1
    assert rounds >= 25, f"only {rounds} rounds in the time box"
    wait_for(lambda: hubs.rig.backlog() == 0, 40, what="final flush")
    _assert_exactly_once(hubs, ids)
