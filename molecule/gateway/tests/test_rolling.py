"""Rolling updates on three simulated units, checked from outside: Docker on each unit and real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import re
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
import yaml
from chat import Traffic, chat, connection
from scenario import PROJECT, Secrets, note, playbook

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SECRETS = yaml.safe_load((PROJECT / "inventories/sim/group_vars/thor/generated.yml").read_text())
UNITS = ("thor-01", "thor-02", "thor-03")
KEY_ALIASES = {"thor-01": "ada", "thor-02": "bo", "thor-03": "cy"}  # roster.csv
CONTAINERS = ("ai-postgres", "ai-vllm", "ai-litellm")
PORT = 12434
OLD = {"ai-postgres": "postgres:0.1.0", "ai-vllm": "vllm-sim:0.1.0", "ai-litellm": "litellm-sim:0.1.0"}
NEW_POSTGRES = "thorfleet-sim/postgres:0.1.1"
NEW_VLLM, NEW_LITELLM = "thorfleet-sim/vllm-sim:0.1.1", "thorfleet-sim/litellm-sim:0.1.1"
BROKEN_VLLM = "thorfleet-sim/vllm-sim:0.1.1-broken"
POSTGRES_17 = "thorfleet-sim/postgres-17:0.1.0"
# Read here, not by the role's own comparison: every key and every spend row, whole.
ROWS_SQL = (
    'select row_to_json(t)::text from "LiteLLM_VerificationToken" t union all '
    'select row_to_json(s)::text from "LiteLLM_SpendLogs" s order by 1'
)
# rolling_update_batch_size=2: the canary alone, then the other two together.
BATCHES = (("thor-01",), ("thor-02", "thor-03"))
KILL_EVENT_GRACE = 1.0
STREAM_TOKENS = 600  # about 3 s at vllm-sim's 200 tokens/s: long enough to be in flight when a drain starts


@pytest.fixture(scope="module")
def keys():
    # keys.yml keeps the raw keys beside the inventory, never in it.
    raw = yaml.safe_load((EPHEMERAL / "inventory.artifacts" / "keys" / "raw-keys.yml").read_text())
    return Secrets({unit: raw[alias] for unit, alias in KEY_ALIASES.items()})


def on_unit(container, *argv: str) -> str:
    code, output = container.exec_run(list(argv))
    assert code == 0, output.decode()
    return output.decode()


def services(container) -> dict[str, tuple[str, str]]:
    """Each service container on the unit: (container id, image reference it runs)."""
    inspected = json.loads(on_unit(container, "docker", "inspect", *CONTAINERS))
    return {c["Name"].lstrip("/"): (c["Id"], c["Config"]["Image"]) for c in inspected}


def images_of(state: dict) -> dict[str, str]:
    return {name: image for name, (_, image) in state.items()}


def backups(container) -> set[str]:
    return set(on_unit(container, "ls", "/var/lib/thorfleet/backups").split())


def has_image(container, ref: str) -> bool:
    return container.exec_run(["docker", "image", "inspect", ref]).exit_code == 0


def events(container, name: str, since: float, until: float) -> list[tuple[float, str]]:
    """(time, action) of the unit's container `name`: kill, die, stop, destroy, create, start."""
    out = on_unit(
        container,
        "docker",
        "events",
        "--since",
        f"{since:.3f}",
        "--until",
        f"{until:.3f}",
        "--filter",
        f"container={name}",
        "--format",
        "{{json .}}",
    )
    return [(int(e["timeNano"]) / 1e9, e["Action"]) for e in map(json.loads, out.splitlines())]


def windows(units, name: str, since: float, until: float) -> dict[str, tuple[float, float]]:
    """Each unit's window out of service: from the first kill of its container `name` (the drain) to the last start."""
    found = {}
    for unit in UNITS:
        happened = events(units[unit], name, since, until)
        kills = [t for t, action in happened if action == "kill"]
        starts = [t for t, action in happened if action == "start"]
        assert kills and starts, (unit, happened)
        found[unit] = (kills[0], starts[-1])
    # A canary, then one batch of two: thor-02 and thor-03 drain together, after thor-01 is back.
    assert found["thor-01"][1] < min(found["thor-02"][0], found["thor-03"][0]), found
    return found


def served_around(requests, out: dict[str, tuple[float, float]]) -> dict:
    """Per unit, that requests failed only in its own window, that those in flight when it began finished (streams to
    their last token) and that the units outside its batch answered meanwhile; returns the counts."""
    summary = {}
    for unit in UNITS:
        drained, restarted = out[unit]
        mine = [r for r in requests.records if r["unit"] == unit]
        # Back up: the first request answered after the container started again.
        back = min(r["start"] for r in mine if r["ok"] and r["start"] >= restarted)
        failed = [r for r in mine if not r["ok"]]
        # Failures only while this unit was in its own batch's drain-to-ready window, none outside it:
        # each ended after the drain began, was sent before the unit was back, and was not yet taken up.
        # Docker logs the kill event after it has delivered the signal, so a request reset on the signal
        # may end a moment before the event's time: a second's grace.
        assert all(
            drained - KILL_EVENT_GRACE <= r["end"]
            and r["start"] <= back
            and r.get("responded", drained) >= drained - KILL_EVENT_GRACE
            for r in failed
        ), (drained, back, failed)
        # Every request in flight (taken up) when the drain began finished, streams to their last token.
        in_flight = [r for r in mine if r.get("responded", r["end"]) < drained < r["end"]]
        assert any(r["stream"] for r in in_flight), mine
        assert all(r["ok"] for r in in_flight), in_flight
        # While it was out, the units outside its batch kept answering.
        batch = next(batch for batch in BATCHES if unit in batch)
        others = [r for r in requests.records if r["unit"] not in batch and drained <= r["start"] <= back]
        assert others and all(r["ok"] for r in others)
        summary[unit] = {
            "requests": len(mine),
            "failed": len(failed),
            "out_of_service_s": round(back - drained, 1),
            "in_flight_at_drain": len(in_flight),
            "others_served_meanwhile": len(others),
        }
    return summary


def ask(address: str, key: str, max_tokens: int = 4, stream: bool = False) -> dict:
    """One chat completion through the unit's LiteLLM."""
    return chat(lambda: connection(address, PORT), key, max_tokens, stream)


def request_stream(addresses: dict, keys: dict) -> Traffic:
    """Per unit, two streaming requests one after another, half a stream apart (so that one is always past its first
    token when a drain begins, not between two), and short requests in a loop, each one recorded."""
    return Traffic(
        (unit, partial(connection, addresses[unit], PORT), keys[unit], STREAM_TOKENS if stream else 4, stream, offset)
        for unit in UNITS
        for stream, offset in ((True, 0.0), (True, 1.5), (False, 0.0))
    )


def key_aliases(address: str) -> list[str]:
    """The alias of every key on the unit's LiteLLM (one page is plenty here)."""
    conn = http.client.HTTPConnection(address, PORT, timeout=10)
    conn.request(
        "GET",
        "/key/list?size=100&return_full_object=true",
        headers={"Authorization": f"Bearer {SECRETS['litellm_proxy_master_key']}"},
    )
    return sorted(str(k["key_alias"]) for k in json.loads(conn.getresponse().read())["keys"])


def recap(output: str) -> dict[str, str]:
    """The recap's row of each unit, as printed."""
    return {unit: row for unit in UNITS for row in re.findall(rf'"({unit}\s.*?)"', output)}


def stopped_at_the_canary(output: str, outcome: str) -> None:
    """The recap: the canary's outcome, and no other unit reached."""
    rows = recap(output)
    assert re.match(rf"thor-01\s+{outcome}\s", rows["thor-01"]), rows
    assert all(re.match(rf"{unit}\s+not reached\s", rows[unit]) for unit in UNITS[1:]), rows


def failures(requests) -> dict[str, int]:
    return {unit: sum(1 for r in requests.records if r["unit"] == unit and not r["ok"]) for unit in UNITS}


def test_site_refuses_on_the_canary_a_flag_vllm_refuses_and_every_unit_serves_throughout(units, addresses, keys):
    """The seed guide's "Fast Startup Mode" flag through site.yml, the documented way to apply a change."""
    before = {unit: services(c) for unit, c in units.items()}
    refused = json.dumps({"vllm_server_settings": {"compilation_config": {"level": 0}}})
    with request_stream(addresses, keys) as requests:
        time.sleep(1)
        code, output = playbook("site", "-e", refused)
    assert code != 0
    stopped_at_the_canary(output, "failed")
    assert "thor-01 (failed): Require vLLM to accept the command line: vLLM in" in output
    assert "validation error for CompilationConfig\nlevel\n  Unexpected keyword argument" in output
    assert {unit: services(c) for unit, c in units.items()} == before
    assert failures(requests) == dict.fromkeys(UNITS, 0), [r for r in requests.records if not r["ok"]]
    note(f"site.yml, a flag vLLM refuses: failed requests {failures(requests)} of {len(requests.records)}")


def test_site_puts_back_a_canary_whose_vllm_fails_its_gate_and_stops(units, addresses, keys):
    before = {unit: services(c) for unit, c in units.items()}
    broken = ("-e", f"container_images_vllm={BROKEN_VLLM}")
    # Check mode reports the change on every unit and makes none.
    code, output = playbook("site", "--check", *broken)
    assert code == 0, output[-3000:]
    assert all(re.match(rf"{unit}\s+would serve\s", recap(output)[unit]) for unit in UNITS), recap(output)
    assert len(re.findall(r"vllm_server : Run vLLM\] \**\nchanged: ", output)) == 3
    assert {unit: services(c) for unit, c in units.items()} == before
    since = time.time()
    with request_stream(addresses, keys) as requests:
        time.sleep(1)
        code, output = playbook("site", *broken)
        time.sleep(1)
    assert code != 0
    stopped_at_the_canary(output, "rolled back")
    assert "thor-01 (rolled back): Require a one-token completion: vLLM on thor-01 answered" in output
    # The canary ran the broken image and has the very containers it ran back; the rest were never touched.
    assert has_image(units["thor-01"], BROKEN_VLLM)
    assert {unit: services(c) for unit, c in units.items()} == before
    assert not any(has_image(units[unit], BROKEN_VLLM) for unit in ("thor-02", "thor-03"))
    # Only the canary failed requests, and only while its vLLM was out.
    out = min(t for t, action in events(units["thor-01"], "ai-vllm", since, time.time()) if action == "kill")
    failed = [r for r in requests.records if not r["ok"]]
    assert all(r["unit"] == "thor-01" and r["end"] >= out - KILL_EVENT_GRACE for r in failed), failed
    assert ask(addresses["thor-01"], keys["thor-01"])["ok"]
    note(f"site.yml, a vLLM that fails its gate: failed requests {failures(requests)} of {len(requests.records)}")


def test_site_rolls_a_good_change_through_in_batches(units, addresses, keys):
    before = {unit: services(c) for unit, c in units.items()}
    since = time.time()
    with request_stream(addresses, keys) as requests:
        time.sleep(2)
        code, output = playbook(
            "site", "-e", json.dumps({"vllm_server_settings": {"max_num_seqs": 8}}), "-e", "thorfleet_batch_size=2"
        )
        time.sleep(2)
    assert code == 0, output[-3000:]
    until = time.time()
    rows = recap(output)
    for unit in UNITS:
        assert re.match(rf"{unit}\s+serving\s", rows[unit]), rows
        after = services(units[unit])
        assert after["ai-vllm"][0] != before[unit]["ai-vllm"][0]
        assert {k: after[k] for k in ("ai-postgres", "ai-litellm")} == {
            k: before[unit][k] for k in ("ai-postgres", "ai-litellm")
        }
        assert "--max-num-seqs" in on_unit(units[unit], "docker", "inspect", "-f", "{{json .Config.Cmd}}", "ai-vllm")
        assert "previous" not in on_unit(units[unit], "docker", "ps", "-a", "--format", "{{.Names}}")
    summary = served_around(requests, windows(units, "ai-vllm", since, until))
    note(f"site.yml, a good change in batches: {json.dumps(summary)}")


def test_a_canary_whose_new_image_fails_its_gate_is_rolled_back_and_the_rollout_stops(units, addresses, keys):
    before = {unit: services(c) for unit, c in units.items()}
    dumps = {unit: backups(c) for unit, c in units.items()}
    assert all(images_of(state) == {n: f"thorfleet-sim/{ref}" for n, ref in OLD.items()} for state in before.values())

    code, output = playbook(
        "rolling_update", "-e", f"container_images_vllm={BROKEN_VLLM}", "-e", "rolling_update_batch_size=2"
    )

    assert code != 0, output
    stopped_at_the_canary(output, "rolled back")
    assert "thor-01 (rolled back): Require a one-token completion" in output
    after = {unit: services(c) for unit, c in units.items()}
    # The canary really ran the broken image (loaded it, backed up, replaced vLLM), and has the very containers it
    # ran back: the vLLM that served was kept, stopped, and nothing of the broken one is left.
    assert has_image(units["thor-01"], BROKEN_VLLM)
    assert len(backups(units["thor-01"]) - dumps["thor-01"]) == 1
    assert after["thor-01"] == before["thor-01"]
    assert "previous" not in on_unit(units["thor-01"], "docker", "ps", "-a", "--format", "{{.Names}}")
    # The rest were never touched: same containers, no new image, no backup.
    for unit in ("thor-02", "thor-03"):
        assert after[unit] == before[unit]
        assert not has_image(units[unit], BROKEN_VLLM)
        assert backups(units[unit]) == dumps[unit]
    # The canary serves its attendee again, and the smoke key is gone.
    assert ask(addresses["thor-01"], keys["thor-01"])["ok"]
    conn = http.client.HTTPConnection(addresses["thor-01"], PORT, timeout=10)
    conn.request(
        "GET",
        "/key/list?key_alias=thorfleet-smoke",
        headers={"Authorization": f"Bearer {SECRETS['litellm_proxy_master_key']}"},
    )
    assert json.loads(conn.getresponse().read())["total_count"] == 0


def test_a_good_update_rolls_through_in_batches_under_a_request_stream(units, addresses, keys):
    before = {unit: services(c) for unit, c in units.items()}
    dumps = {unit: backups(c) for unit, c in units.items()}
    aliases_before = {unit: key_aliases(address) for unit, address in addresses.items()}
    assert all(KEY_ALIASES[unit] in aliases for unit, aliases in aliases_before.items()), aliases_before
    since = time.time()
    # And clients of the fleet gateway (on thor-01), which routes around each unit while it is updated.
    raw = yaml.safe_load((EPHEMERAL / "inventory.artifacts" / "keys" / "raw-keys.yml").read_text())
    gateway = partial(connection, addresses["thor-01"], 443, str(EPHEMERAL / "inventory.artifacts" / "ca" / "ca.crt"))
    # A gateway user each (gateway-roster.csv), under nginx's rate per key.
    through_gateway = Traffic(
        ("gateway", gateway, raw[alias], STREAM_TOKENS if stream else 4, stream, offset)
        for alias, stream, offset in (
            ("gw-1", True, 0.0),
            ("gw-2", True, 1.5),
            ("gw-3", False, 0.0),
            ("gw-4", False, 0.1),
        )
    )
    with request_stream(addresses, keys) as requests, through_gateway:
        time.sleep(2)  # the stream runs before the first drain
        started = time.monotonic()
        code, output = playbook(
            "rolling_update",
            "-e",
            f"container_images_vllm={NEW_VLLM}",
            "-e",
            f"container_images_litellm={NEW_LITELLM}",
            "-e",
            f"container_images_postgres={NEW_POSTGRES}",
            "-e",
            "rolling_update_batch_size=2",
        )
        seconds = time.monotonic() - started
        time.sleep(2)  # and after the last gate
    assert code == 0, output
    until = time.time()

    rows = recap(output)
    for unit in UNITS:
        assert re.match(rf"{unit}\s+updated\s", rows[unit]), rows
        assert all(ref in rows[unit] for ref in (NEW_VLLM, NEW_LITELLM, NEW_POSTGRES)), rows[unit]
        after = services(units[unit])
        assert images_of(after) == {"ai-postgres": NEW_POSTGRES, "ai-vllm": NEW_VLLM, "ai-litellm": NEW_LITELLM}
        assert after["ai-postgres"][0] != before[unit]["ai-postgres"][0]
        # Once every gate passed, nothing kept for a rollback is left.
        assert "previous" not in on_unit(units[unit], "docker", "ps", "-a", "--format", "{{.Names}}")
        # Backed up before PostgreSQL moved; its data carried over: every key is still there.
        assert len(backups(units[unit]) - dumps[unit]) == 1
        assert key_aliases(addresses[unit]) == aliases_before[unit]
    summary = served_around(requests, windows(units, "ai-litellm", since, until))
    note(f"rolling_update.yml, a good update in {seconds:.1f} s: {json.dumps(summary)}")
    # Through the gateway, not one failure: each unit's vLLM drained what it had and the router sent the rest elsewhere.
    by_unit = Counter(r["served_by"] for r in through_gateway.records)
    note(
        f"rolling_update.yml through the gateway: {len(through_gateway.records)} requests, "
        f"{sum(not r['ok'] for r in through_gateway.records)} failed, served by {dict(by_unit)}"
    )
    assert [r for r in through_gateway.records if not r["ok"]] == []
    assert set(by_unit) == set(UNITS), by_unit


def rows(container) -> list[str]:
    """Every key and spend row in the unit's database."""
    out = on_unit(
        container, "docker", "exec", "ai-postgres", "psql", "-U", "litellm", "-d", "litellmdb", "-tAc", ROWS_SQL
    )
    return out.splitlines()


def data_version(container) -> str:
    return on_unit(container, "cat", "/var/lib/thorfleet/postgres/PG_VERSION").strip()


def kept(container) -> list[str]:
    """What a rollback could still put back: NAME-previous containers and folders."""
    names = on_unit(container, "docker", "ps", "-a", "--format", "{{.Names}}").split()
    return [n for n in names if n.endswith("-previous")] + [
        f for f in on_unit(container, "ls", "/var/lib/thorfleet").split() if f.endswith("-previous")
    ]


def psql(container, *commands: str) -> None:
    argv = ["docker", "exec", "ai-postgres", "psql", "-v", "ON_ERROR_STOP=1", "-U", "litellm", "-d", "litellmdb"]
    on_unit(container, *argv, *(arg for command in commands for arg in ("-c", command)))


def test_a_postgresql_major_change_is_refused_without_the_opt_in_and_carries_every_row_with_it(units, addresses, keys):
    before = {unit: services(c) for unit, c in units.items()}
    assert {data_version(c) for c in units.values()} == {"15"}
    seventeen = ("-e", f"container_images_postgres={POSTGRES_17}")

    # Without the opt-in: refused on the canary before its PostgreSQL is touched, with the remedy; nobody is cut off.
    with request_stream(addresses, keys) as requests:
        time.sleep(1)
        code, output = playbook("site", *seventeen)
    assert code != 0
    stopped_at_the_canary(output, "failed")
    assert f"{POSTGRES_17} runs PostgreSQL 17, but the data folder /var/lib/thorfleet/postgres was made by" in output
    assert "or upgrade with -e postgres_major_upgrade=true" in output
    assert {unit: services(c) for unit, c in units.items()} == before
    assert failures(requests) == dict.fromkeys(UNITS, 0), [r for r in requests.records if not r["ok"]]
    note(f"site.yml, PostgreSQL 17 without the opt-in: failed requests {failures(requests)} of {len(requests.records)}")
    # Every key and spend row now (LiteLLM writes spend as it answers, and the stream has ended).
    data = {unit: rows(c) for unit, c in units.items()}
    assert all(
        any('"request_id"' in r for r in found) and any('"token"' in r for r in found) for found in data.values()
    )

    # Check mode with it reports the upgrade on the canary (which has the image now) and makes none.
    code, output = playbook("site", "--check", *seventeen, "-e", "postgres_major_upgrade=true")
    assert code == 0, output[-3000:]
    assert re.search(
        r"Stop LiteLLM, so that nothing writes while PostgreSQL goes from 15 to 17\] \**\nchanged: \[thor-01\]", output
    )
    assert re.search(r"Keep the running PostgreSQL and set its data folder aside\] \**\nchanged: \[thor-01\]", output)
    assert {unit: services(c) for unit, c in units.items()} == before
    assert {unit: rows(c) for unit, c in units.items()} == data

    # A restore the new server refuses (a grant to a role a database dump does not carry): the canary gets its
    # PostgreSQL 15 back, on its own data folder, and the run stops.
    psql(units["thor-01"], "create role reporting", 'grant select on "LiteLLM_SpendLogs" to reporting')
    code, output = playbook("site", *seventeen, "-e", "postgres_major_upgrade=true")
    assert code != 0
    stopped_at_the_canary(output, "rolled back")
    assert "PostgreSQL from 15 to 17 failed on thor-01 at 'Require pg_restore to succeed'" in output
    assert 'role "reporting" does not exist' in output
    assert {unit: services(c) for unit, c in units.items()} == before
    assert data_version(units["thor-01"]) == "15" and kept(units["thor-01"]) == []
    assert {unit: rows(c) for unit, c in units.items()} == data
    assert ask(addresses["thor-01"], keys["thor-01"])["ok"]
    psql(units["thor-01"], "drop owned by reporting", "drop role reporting")
    data = {unit: rows(c) for unit, c in units.items()}

    # With the opt-in: every unit, a canary then a batch of two. No requests meanwhile, so that nothing adds spend:
    # every key and spend row after is the one before, whole.
    started = time.monotonic()
    code, output = playbook("site", *seventeen, "-e", "postgres_major_upgrade=true", "-e", "thorfleet_batch_size=2")
    seconds = time.monotonic() - started
    assert code == 0, output[-3000:]
    for unit, container in units.items():
        assert re.match(rf"{unit}\s+serving\s", recap(output)[unit]), recap(output)
        assert images_of(services(container))["ai-postgres"] == POSTGRES_17
        assert data_version(container) == "17" and kept(container) == []
        assert rows(container) == data[unit]
        assert ask(addresses[unit], keys[unit])["ok"]
    count = sum(map(len, data.values()))
    note(f"site.yml, PostgreSQL 15 to 17 with the opt-in on 3 units in {seconds:.1f} s: {count} rows, all equal after")
