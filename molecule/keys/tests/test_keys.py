"""Verify the roster's keys on the simulated fleet (testinfra, through molecule's inventory)."""

import csv
import hashlib
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import testinfra
import yaml
from scenario import PROJECT, Secrets, playbook

INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
ARTIFACTS = INVENTORY.with_name("inventory.artifacts")  # beside the inventory, never in it
KEYS_DIR = ARTIFACTS / "keys"
ROSTER = PROJECT / "molecule" / "keys" / "roster.csv"
MODEL = "Qwen3-VL-30B-A3B"
# The scenario's inventory moves LiteLLM off its default port (hosts.yml): every playbook must follow it.
PORT = 14434
ORGANISERS = json.dumps({"keys_organisers": [{"alias": "organiser"}]})


@pytest.fixture(scope="module")
def host(request):
    """thor-01 alone: the shared verifier options run tests on every unit, and attendees' keys differ by unit."""
    return testinfra.get_host("ansible://thor-01", ansible_inventory=request.config.option.ansible_inventory)


@pytest.fixture(scope="module")
def raw_keys():
    return Secrets(yaml.safe_load((KEYS_DIR / "raw-keys.yml").read_text()))


def chat(host, key, n=1):
    """n chat requests on the unit with `key`; returns [(status, retry-after header)]."""
    script = f"""
import json, urllib.request, urllib.error
out = []
for _ in range({n}):
    req = urllib.request.Request("http://127.0.0.1:{PORT}/v1/chat/completions", method="POST",
        data=json.dumps({{"model": {MODEL!r}, "messages": [{{"role": "user", "content": "hi"}}],
                          "max_tokens": 2}}).encode(),
        headers={{"Content-Type": "application/json", "Authorization": "Bearer " + {key!r}}})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            out.append([r.status, None])
    except urllib.error.HTTPError as e:
        out.append([e.code, e.headers.get("retry-after")])
print(json.dumps(out))
"""
    return [tuple(x) for x in json.loads(host.check_output(f"python3 -c {shlex.quote(script)}"))]


def test_handout_lists_every_key_privately(raw_keys):
    handout = KEYS_DIR / "handout.csv"
    assert oct(handout.stat().st_mode & 0o777) == "0o600"
    assert oct((KEYS_DIR / "raw-keys.yml").stat().st_mode & 0o777) == "0o600"
    rows = list(csv.DictReader(handout.open()))
    roster = {r["alias"]: r["unit"] for r in csv.DictReader(ROSTER.open())}
    attendees = {r["alias"]: r["unit"] for r in rows if r["alias"] in roster}
    assert attendees == roster
    assert {r["unit"] for r in rows if r["alias"] == "organiser"} == {"thor-01", "thor-02"}
    assert all(r["key"] == raw_keys[r["alias"]] and r["base_url"].endswith(f":{PORT}/v1") for r in rows)


def test_the_inventory_holds_only_the_units():
    """The keys and reports written beside the inventory are not read as inventory."""
    listed = subprocess.run(
        ["ansible-inventory", "-i", str(INVENTORY), "--list"], capture_output=True, text=True, check=True
    )
    groups = json.loads(listed.stdout)
    hosts = {host for group in groups.values() if isinstance(group, dict) for host in group.get("hosts", [])}
    assert hosts == {"thor-01", "thor-02", "cache_source"}
    assert "WARNING" not in listed.stderr, listed.stderr


def test_an_attendee_key_works_on_its_own_unit_only(host, raw_keys):
    assert chat(host, raw_keys["carol"]) == [(200, None)]
    assert chat(host, raw_keys["organiser"]) == [(200, None)]
    assert chat(host, raw_keys["bob"])[0][0] == 401  # bob's unit is thor-02


def test_over_the_rpm_limit_is_429_with_retry_after(host, raw_keys):
    results = chat(host, raw_keys["alice"], n=3)  # alice: rpm_limit 2
    assert [status for status, _ in results[:2]] == [200, 200]
    status, retry_after = results[2]
    assert status == 429
    assert retry_after is not None and int(retry_after) > 0


def sql(host, query):
    """One row of `query` from LiteLLM's database on the unit, as strings."""
    command = f"docker exec ai-postgres psql -U litellm -d litellmdb -tAF, -c {shlex.quote(query)}"
    return host.check_output(command).split(",")


def test_spend_report_adds_up_what_the_database_holds(host, raw_keys):
    assert chat(host, raw_keys["carol"], n=2) == [(200, None), (200, None)]
    rc, output = playbook("spend_report")
    assert rc == 0, output[-3000:]
    assert "carol" in output and "Written: " in output
    rows = {(row["unit"], row["alias"]): row for row in csv.DictReader((ARTIFACTS / "reports" / "spend.csv").open())}
    assert set(rows) == {("thor-01", "alice"), ("thor-01", "carol"), ("thor-02", "bob")} | {
        (unit, "organiser") for unit in ("thor-01", "thor-02")
    }
    token = hashlib.sha256(raw_keys["carol"].encode()).hexdigest()
    requests, tokens = sql(
        host, f"""SELECT count(*), sum(total_tokens) FROM "LiteLLM_SpendLogs" WHERE api_key = '{token}'"""
    )
    (spend,) = sql(host, f"""SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = '{token}'""")
    carol = rows[("thor-01", "carol")]
    assert int(requests) >= 3 and int(tokens) > 0
    assert (carol["requests"], carol["total_tokens"]) == (requests, tokens)
    assert float(carol["spend_usd"]) == pytest.approx(float(spend), rel=1e-5) and float(spend) > 0
    assert "| unit | alias |" in (ARTIFACTS / "reports" / "spend.md").read_text()
    for secret in raw_keys.values():
        assert secret not in output


BAD_ROSTERS = {
    "malformed row": ("alias,unit,email,team\n,thor-01,x@example.org,eng\n", "roster row 1: alias '' is missing"),
    "duplicate alias": ("alias,unit\ndan,thor-01\ndan,thor-02\n", "roster row 2: alias 'dan' is already used by row 1"),
    "negative limit": (
        "alias,unit,rpm_limit\ndan,thor-01,-3\n",
        "roster row 1 (dan) rpm_limit: '-3' must be 0 or more",
    ),
    "bad budget_duration": (
        "alias,unit,budget_duration\ndan,thor-01,30 days\n",
        "roster row 1 (dan) budget_duration '30 days' is not a duration LiteLLM accepts",
    ),
    "unknown unit": ("alias,unit\ndan,thor-09\n", "roster row 1 (dan): unit 'thor-09' is not in the inventory"),
}


@pytest.mark.parametrize("case", BAD_ROSTERS)
def test_a_bad_roster_is_refused_before_any_change(tmp_path, case):
    text, message = BAD_ROSTERS[case]
    roster = tmp_path / "roster.csv"
    roster.write_text(text)
    store = (KEYS_DIR / "raw-keys.yml").read_bytes()
    rc, output = playbook("keys", "-e", f"keys_roster={roster}")
    assert rc != 0
    assert message in output, output[-2000:]
    assert "thor-01 " not in output.split("PLAY RECAP")[-1]  # the units were never reached
    assert (KEYS_DIR / "raw-keys.yml").read_bytes() == store


def test_keys_come_back_after_the_database_is_lost(host, raw_keys):
    host.check_output("docker rm -f ai-postgres && rm -rf /var/lib/thorfleet/postgres")
    rc, output = playbook("site", "--limit", "thor-01")
    assert rc == 0, output[-3000:]
    assert chat(host, raw_keys["carol"])[0][0] == 401  # a new, empty database
    rc, output = playbook("keys", "-e", f"keys_roster={ROSTER}", "-e", ORGANISERS)
    assert rc == 0, output[-3000:]
    assert chat(host, raw_keys["carol"]) == [(200, None)]
    for secret in raw_keys.values():
        assert secret not in output
