"""The model cache cascade planner: rounds, per-source limits, retries from other sources, unfilled units."""

import math

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.filter.cascade import cascade_plan, cascade_round_report, cascade_rounds


def units(count, done=()):
    return {f"thor-{i:02d}": {"done": f"thor-{i:02d}" in done, "tried": []} for i in range(1, count + 1)}


def run(fleet, strategy="tree", concurrency=1, fails=lambda unit, source, n: False):
    """Play the cascade to its end; `fails(unit, source, round)` says which pulls fail. Returns rounds and result."""
    rounds = []
    while True:
        plan = cascade_plan(fleet, "src", strategy, concurrency)
        if not plan["pulls"]:
            return rounds, plan
        rounds.append(plan["pulls"])
        for unit, source in plan["pulls"].items():
            if fails(unit, source, len(rounds)):
                fleet[unit]["tried"].append(source)
            else:
                fleet[unit]["done"] = True


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 8, 9, 60])
def test_tree_doubles_the_sources_each_round(count):
    rounds, plan = run(units(count))
    assert len(rounds) == math.ceil(math.log2(count + 1))
    assert plan["unfilled"] == []
    for number, pulls in enumerate(rounds):
        assert len(pulls) == min(2**number, count - (2**number - 1))
    assert cascade_rounds(count) == len(rounds)


def test_every_source_serves_a_verified_copy_and_at_most_concurrency_pulls():
    fleet = units(20)
    done = set()
    while plan := cascade_plan(fleet, "src", "tree", 2)["pulls"]:
        assert set(plan.values()) <= done | {"src"}
        assert max(list(plan.values()).count(s) for s in set(plan.values())) <= 2
        for unit in plan:
            fleet[unit]["done"] = True
            done.add(unit)
    assert len(done) == 20
    assert cascade_rounds(20, "tree", 2) == math.ceil(math.log(21, 3))


def test_star_takes_everything_from_the_source():
    rounds = run(units(8), "star", 8)[0]
    assert rounds == [dict.fromkeys(units(8), "src")]
    assert cascade_rounds(8, "star", 3) == 3


def test_units_already_holding_a_copy_are_sources_from_the_start():
    plan = cascade_plan(units(4, done={"thor-01"}), "src", "tree", 1)
    assert plan["pulls"] == {"thor-02": "src", "thor-03": "thor-01"}
    assert plan["waiting"] == ["thor-04"]


def test_a_failed_unit_is_retried_from_another_source():
    rounds, plan = run(units(4), fails=lambda unit, source, n: unit == "thor-02" and source == "src")
    sources = [pulls["thor-02"] for pulls in rounds if "thor-02" in pulls]
    assert sources[0] == "src" and sources[1] != "src"
    assert plan["unfilled"] == []


def test_a_source_that_failed_others_is_offered_last():
    fleet = units(4, done={"thor-01", "thor-02"})
    fleet["thor-03"]["tried"] = ["thor-01"]
    plan = cascade_plan(fleet, "src", "tree", 1)
    assert plan["pulls"]["thor-04"] != "thor-01"


def test_a_unit_that_fails_everywhere_is_unfilled_after_its_attempts():
    rounds, plan = run(units(4), fails=lambda unit, source, n: unit == "thor-04")
    assert plan["unfilled"] == ["thor-04"]
    assert sum("thor-04" in pulls for pulls in rounds) == 3
    assert [u for u in units(4) if u != "thor-04"] == sorted(u for pulls in rounds for u in pulls if u != "thor-04")


def test_star_cannot_retry_elsewhere():
    rounds, plan = run(units(2), "star", 2, fails=lambda unit, source, n: unit == "thor-01")
    assert len(rounds) == 1
    assert plan["unfilled"] == ["thor-01"]


def test_when_the_source_fails_everyone_nobody_waits_for_ever():
    plan = run(units(3), fails=lambda unit, source, n: True)[1]
    assert plan["unfilled"] == ["thor-01", "thor-02", "thor-03"]
    assert plan["waiting"] == []


def test_a_healthy_fleet_has_no_round():
    assert cascade_plan(units(3, done={"thor-01", "thor-02", "thor-03"}), "src") == {
        "pulls": {},
        "waiting": [],
        "unfilled": [],
    }


@pytest.mark.parametrize(("strategy", "concurrency", "attempts"), [("ring", 1, 3), ("tree", 0, 3), ("tree", 1, 0)])
def test_bad_settings_are_refused(strategy, concurrency, attempts):
    with pytest.raises(AnsibleFilterError):
        cascade_plan(units(2), "src", strategy, concurrency, attempts)


def test_round_report_names_who_finished_and_who_failed_with_bytes_and_rate():
    plan = {"pulls": {"thor-01": "src", "thor-02": "thor-03"}}
    results = {
        "thor-01": {"complete": True, "received_bytes": 50_000_000, "changed": True},
        "thor-02": {"complete": False, "failed": False, "msg": "rsync from rsync://x failed (10)"},
    }
    report = cascade_round_report(results, plan, 2, 10.0)
    assert report["finished"] == {"thor-01": "src"}
    assert report["failed"] == {"thor-02": {"source": "thor-03", "msg": "rsync from rsync://x failed (10)"}}
    assert (report["bytes"], report["mb_per_s"]) == (50_000_000, 5.0)
    assert report["text"].startswith("round 2: 1/2 filled; finished thor-01 (from src); FAILED thor-02")
