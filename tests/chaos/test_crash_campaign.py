"""Issue 8's crash campaign: the daemon killed with SIGKILL at random moments and at every named crash
point while documents, mails and received faxes keep coming, then left to settle; afterwards every
input was sent exactly once or visibly marked, every fax is on disk once and gone from FAX.de, no
temporary file is left, the journal agrees with the folders, and no secret reached a log or report.

The quick campaign runs in `make test`. `make chaos` runs the long one (FAXBRIDGE_CHAOS_KILLS=200,
FAXBRIDGE_CHAOS_FAULTS=0.3) and prints its figures; FAXBRIDGE_CHAOS_SEED repeats a run's choices.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faxbridge.crashpoints import POINTS

from rig import FAXDE_PASSWORD, Campaign, Scale, check_invariants, leaks, scale_from_environment, summary

# FAX.de's duplicate window 4 s and the bridge's the same, with a crash loop longer than both.
QUICK = Scale(random_kills=10, fault_rate=0.1, provider_window=4.0, crash_loop=6.0)
SCALE = scale_from_environment(QUICK)
SEED = int(os.environ.get("FAXBRIDGE_CHAOS_SEED", "8"))
# Lives, the settling, the checks: generous, so a slow CI machine fails on an invariant, not a clock.
BUDGET = ((SCALE.random_kills + 2 * len(POINTS)) * (SCALE.point_wait + 1) + 10 * SCALE.settle_timeout + 60
          + 2 * SCALE.crash_loop)


@pytest.mark.timeout(BUDGET)
def test_killed_at_random_and_at_every_crash_point_nothing_is_lost_or_sent_twice(tmp_path: Path) -> None:
    campaign = Campaign(tmp_path, SCALE, SEED)
    try:
        campaign.start_workload()
        campaign.run_lives()
        campaign.stop_workload()
        campaign.settle()
        verdict = check_invariants(campaign)
        print("\n" + summary(campaign, verdict))
        assert not campaign.workload_errors, campaign.workload_errors
        assert not verdict.problems, "\n".join(verdict.problems[:40])
        assert set(campaign.figures.points_hit) == set(POINTS), (
            f"crash points never reached: {sorted(set(POINTS) - set(campaign.figures.points_hit))}")
        assert verdict.counts["lost"] == 0 and verdict.counts["duplicated"] == 0
        assert leaks(campaign, [FAXDE_PASSWORD]) == []
    finally:
        campaign.close()
