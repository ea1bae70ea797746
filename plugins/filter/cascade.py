"""The model cache cascade: who pulls from whom in each round, and what a round achieved."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

STRATEGIES = ("tree", "star")


def cascade_plan(units, origin, strategy="tree", concurrency=1, attempts=3):
    """The next round's pulls.

    `units` maps each unit to {"done": bool, "tried": [sources it failed to fill from]}. The sources are
    `origin` and, with `tree`, every unit that is done (its copy verified); each serves at most `concurrency`
    pulls at once. A unit is never sent to a source it already failed from, and gives up after `attempts`.

    Returns {"pulls": {unit: source}, "waiting": [units left for a later round], "unfilled": [units that
    cannot be filled]}. No pulls means the cascade is over.
    """
    if strategy not in STRATEGIES:
        raise AnsibleFilterError(f"cascade_plan: strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if int(concurrency) < 1 or int(attempts) < 1:
        raise AnsibleFilterError("cascade_plan: concurrency and attempts must be 1 or more")
    holders = sorted(name for name, unit in units.items() if unit.get("done"))
    sources = [origin, *holders] if strategy == "tree" else [origin]
    # A source that others failed from is offered last.
    failures = {source: 0 for source in sources}
    for unit in units.values():
        for source in unit.get("tried", []):
            if source in failures:
                failures[source] += 1
    load = dict.fromkeys(sources, 0)
    pulls, waiting, unfilled = {}, [], []
    for name in sorted(name for name, unit in units.items() if not unit.get("done")):
        tried = set(units[name].get("tried", []))
        if len(tried) >= int(attempts):
            unfilled.append(name)
            continue
        untried = [source for source in sources if source not in tried]
        free = [source for source in untried if load[source] < int(concurrency)]
        if free:
            source = min(free, key=lambda s: (load[s], failures[s], sources.index(s)))
            pulls[name] = source
            load[source] += 1
        elif untried or strategy == "tree":
            # A busy source, or (tree) a unit filled in this round, may serve it next round.
            waiting.append(name)
        else:
            unfilled.append(name)
    if not pulls:
        # Nothing moves: whoever waits would wait for ever.
        unfilled, waiting = sorted(unfilled + waiting), []
    return {"pulls": pulls, "waiting": waiting, "unfilled": unfilled}


def cascade_rounds(count, strategy="tree", concurrency=1):
    """Rounds a cascade takes to fill `count` units when every pull succeeds."""
    units = {f"u{i}": {"done": False} for i in range(int(count))}
    rounds = 0
    while True:
        plan = cascade_plan(units, "origin", strategy, concurrency)
        if not plan["pulls"]:
            return rounds
        rounds += 1
        for name in plan["pulls"]:
            units[name]["done"] = True


def cascade_round_report(results, plan, number, seconds):
    """What one round achieved, from each pulling unit's cache_tree result.

    `results` maps each unit that pulled to its registered result. Returns finished and failed units
    (with the source and, for failures, the reason), bytes received, seconds, MB/s and a one-line text.
    """
    finished, failed, received = {}, {}, 0
    for name, source in sorted(plan["pulls"].items()):
        result = results.get(name) or {}
        received += int(result.get("received_bytes", 0))
        if result.get("complete") and not result.get("failed"):
            finished[name] = source
        else:
            failed[name] = {"source": source, "msg": str(result.get("msg", "no result"))}
    seconds = max(float(seconds), 0.001)
    rate = received / seconds / 1e6
    parts = [f"round {number}: {len(finished)}/{len(plan['pulls'])} filled"]
    if finished:
        parts.append("finished " + ", ".join(f"{n} (from {s})" for n, s in finished.items()))
    if failed:
        parts.append("FAILED " + ", ".join(f"{n} (from {f['source']}: {f['msg']})" for n, f in failed.items()))
    parts.append(f"{received / 1e6:.1f} MB in {seconds:.1f} s, {rate:.1f} MB/s")
    return {
        "round": int(number),
        "finished": finished,
        "failed": failed,
        "bytes": received,
        "seconds": round(seconds, 3),
        "mb_per_s": round(rate, 2),
        "text": "; ".join(parts),
    }


class FilterModule:
    def filters(self):
        return {
            "cascade_plan": cascade_plan,
            "cascade_rounds": cascade_rounds,
            "cascade_round_report": cascade_round_report,
        }
