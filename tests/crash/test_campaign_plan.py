"""The crash campaign's plan: every (provider, kill target) pair gets its share, and replacements for
injections whose run finished before the kill point stay with their pair and never reuse an index
(an index seeds the kill point, so replaying ``PATCHWAVE_CRASH_INDEX=i`` must mean one injection)."""

from __future__ import annotations

from collections import Counter

from tests.crash.harness import KILL_TARGETS, PROVIDERS, TOP_UPS, Campaign, headline


def test_the_plan_gives_every_pair_its_share() -> None:
    campaign = Campaign(seed="s", injections=102)
    counts = Counter(campaign.plan())
    assert set(counts) == {(p, t) for p in PROVIDERS for t in KILL_TARGETS}
    assert set(counts.values()) == {17}


def test_top_ups_stay_with_their_pair_and_never_reuse_an_index() -> None:
    for injections in (1, 7, 36, 102):
        campaign = Campaign(seed="s", injections=injections)
        used = set(range(injections))
        for pair in campaign.pairs:
            extra = campaign.top_ups(pair)
            assert len(extra) == TOP_UPS
            assert all(campaign.pair_of(i) == pair for i in extra), (injections, pair, extra)
            assert used.isdisjoint(extra), (injections, pair, extra)
            used |= set(extra)


def test_a_narrowed_campaign_plans_only_what_it_was_given() -> None:
    campaign = Campaign(seed="s", injections=8, providers=("proxmox",), targets=("server",))
    assert campaign.plan() == [("proxmox", "server")] * 8
    assert campaign.top_ups(("proxmox", "server")) == list(range(8, 8 + TOP_UPS))


def test_the_headline_names_a_dirty_run_that_finished_before_its_kill_point() -> None:
    # CI seed f085b56f printed "120 clean, 0 dirty" while the test failed on such a run
    data = Campaign(seed="s", injections=6).summary() | {"clean": 6, "dirty": 0, "dirty_uninjected": 1}
    assert "6 clean, 0 dirty + 1 dirty run(s) that finished before their kill point (" in headline(data)
    assert "kill point" not in headline(data | {"dirty_uninjected": 0})
