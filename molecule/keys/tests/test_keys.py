"""Verify the roster's keys on the simulated fleet (testinfra, through molecule's inventory)."""

import csv
import json
import os
import shlex
from pathlib import Path

import pytest
import yaml
from scenario import PROJECT, playbook

KEYS_DIR = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory" / "keys"
ROSTER = PROJECT / "molecule" / "keys" / "roster.csv"
MODEL = "Qwen3-VL-30B-A3B"
ORGANISERS = json.dumps({"keys_organisers": [{"alias": "organiser"}]})
testinfra_hosts = ["thor-01"]


@pytest.fixture(scope="module")
def raw_keys():
    return yaml.safe_load((KEYS_DIR / "raw-keys.yml").read_text())


def chat(host, key, n=1):
    """n chat requests on the unit with `key`; returns [(status, retry-after header)]."""
    script = f"""
import json, urllib.request, urllib.error
out = []
for _ in range({n}):
    req = urllib.request.Request("http://127.0.0.1:12434/v1/chat/completions", method="POST",
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
    assert all(r["key"] == raw_keys[r["alias"]] and r["base_url"].endswith(":12434/v1") for r in rows)


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
