"""Issue 8's provider faults: the same mixed workload while the simulator fails 30 % of all SOAP calls
— HTTP 500, SOAP faults, connections dropped before and after the call was processed, answers delayed
past faxbridge's timeout. Every job still reaches FAX.de exactly once (a dropped answer is reconciled
through FAX.de's duplicate answer -77, never paid twice), and every received fax is stored once."""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path

import pytest

from rig import FAXDE_PASSWORD, Campaign, Scale, check_invariants, fault_rules, leaks, summary

SECONDS = float(os.environ.get("FAXBRIDGE_CHAOS_FAULT_SECONDS", "10"))
RATE = 0.3


@pytest.mark.timeout(SECONDS + 180)
def test_thirty_percent_of_calls_failing_every_job_reaches_faxde_once_every_fax_is_stored_once(
    tmp_path: Path,
) -> None:
    # The shipped windows: FAX.de's duplicate window a minute (the simulator's), the bridge's 30 s.
    # With 30 % of calls failing, a job whose answer was lost needs several re-sends; a window of a
    # few seconds (the crash campaign's) would leave about one job in a hundred to the operator.
    scale = Scale(fault_rate=RATE, settle_timeout=120, provider_window=60.0, reconcile_window=30.0)
    campaign = Campaign(tmp_path, scale, seed=30)
    try:
        campaign.simulator.set_faults(*fault_rules(RATE), seed=campaign.seed)
        life = campaign.start_daemon()
        campaign.start_workload()
        time.sleep(SECONDS)
        campaign.stop_workload()
        campaign.settle(life, keep_faults=True)
        verdict = check_invariants(campaign)
        print("\n" + summary(campaign, verdict))
        calls = campaign.simulator.calls
        faults = collections.Counter(call.fault for call in calls if call.fault)
        assert not campaign.workload_errors, campaign.workload_errors
        assert not verdict.problems, "\n".join(verdict.problems[:40])
        # Every kind of fault was injected, about as often as asked.
        assert set(faults) == {"http_500", "soap_fault", "drop_before", "drop_after", "delay"}, faults
        assert 0.2 < sum(faults.values()) / len(calls) < 0.4
        # Every good document and every mail was submitted: none is left rejected or unknown.
        states = {k[4:]: n for k, n in verdict.counts.items() if k.startswith("job ")}
        assert set(states) <= {"delivered", "confirmed"}, states
        assert verdict.counts["lost"] == 0 and verdict.counts["duplicated"] == 0
        assert leaks(campaign, [FAXDE_PASSWORD]) == []
    finally:
        campaign.close()
