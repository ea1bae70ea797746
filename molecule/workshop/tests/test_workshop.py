"""A workshop's cohorts on two units with Open WebUI: cohort A's keys and chats, its closing report, the reset to
cohort B, and keys that end at a set time. After test_webui.py (file order), on the same units.

Each attendee of A makes API requests with their key, and each unit's first Open WebUI account a chat; a report during
the cohort is written again only once the figures moved; the reset's --check changes nothing; bad input is refused
before any change; the reset revokes A (401), issues B (200), archives a report whose rows equal what each unit's
database holds, and leaves no account or chat of A in Open WebUI (read through its API by the next cohort's first
account), whose own key still works; a second reset changes nothing; at the day's end B ends without a next cohort
(one named without its roster is refused), its keys 401, its report archived, Open WebUI empty.
"""

import csv
import hashlib
import os
import re
import shlex
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import testinfra
import yaml
from scenario import Secrets, http, note, playbook

UNITS = ("thor-01", "thor-02")
ARTIFACTS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory.artifacts"
WEBUI = "http://127.0.0.1:8080"
LITELLM = "http://127.0.0.1:12434"
MODEL = "Qwen3-VL-30B-A3B"
COHORT_A = {"alice-a": "thor-01", "bob-a": "thor-02"}
COHORT_B = {"carol-b": "thor-01", "dave-b": "thor-02"}
# Each unit's first Open WebUI account in cohort A (thor-01's signed up in test_webui.py) and in cohort B.
PASSWORD = "Thor-fleet-2026!"
ACCOUNTS_A = {"thor-01": "ada@example.org", "thor-02": "bo@example.org"}
ACCOUNTS_B = {unit: f"next-{unit}@example.org" for unit in UNITS}
# The workshop's end: every key of A and B stops working then, within the hour that status.yml counts.
END = (datetime.now(UTC) + timedelta(minutes=30)).replace(microsecond=0).isoformat()


@pytest.fixture(scope="module")
def units(request):
    inventory = request.config.option.ansible_inventory
    return {unit: testinfra.get_host(f"ansible://{unit}", ansible_inventory=inventory) for unit in UNITS}


def roster(folder, name, people, expires=""):
    path = folder / f"{name}.csv"
    header = "alias,unit,expires" if expires else "alias,unit"
    path.write_text("\n".join([header, *(",".join(filter(None, (a, u, expires))) for a, u in people.items())]) + "\n")
    return path


def raw_keys():
    return Secrets(yaml.safe_load((ARTIFACTS / "keys" / "raw-keys.yml").read_text()))


def reports():
    folder = ARTIFACTS / "reports"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def chat(host, key, n=1):
    """Status of n chat requests with `key` through the unit's LiteLLM."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "workshop"}], "max_tokens": 5}
    return [http(host, "POST", f"{LITELLM}/v1/chat/completions", body, key=key)[0] for _ in range(n)]


def sign_in(host, email):
    status, body = http(host, "POST", f"{WEBUI}/api/v1/auths/signin", {"email": email, "password": PASSWORD})
    assert status == 200, body
    return body["token"]


def sql(host, query):
    command = f"docker exec ai-postgres psql -U litellm -d litellmdb -tAF, -c {shlex.quote(query)}"
    return host.check_output(command).strip().split(",")


def changed(output):
    """Each host's changed count from the PLAY RECAP."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M)}


def reset(next_roster, *args, ending="A"):
    return playbook(
        "workshop_reset",
        *("-e", f"workshop_cohort={ending}", "-e", "keys_cohort=B", "-e", f"keys_roster={next_roster}"),
        *("-e", f"keys_expires={END}", *args),
    )


@pytest.fixture(scope="module")
def late(units, tmp_path_factory):
    """A key whose end is a minute ahead, issued first so that the minute passes while the cohorts are tried."""
    ends = (datetime.now(UTC) + timedelta(seconds=60)).replace(microsecond=0)
    path = roster(tmp_path_factory.mktemp("late"), "late", {"late": "thor-01"}, ends.isoformat())
    code, output = playbook("keys", "-e", f"keys_roster={path}")
    assert code == 0, output[-3000:]
    key = raw_keys()["late"]
    assert chat(units["thor-01"], key) == [200]
    return ends, key


@pytest.fixture(scope="module")
def cohort_a(units, late, tmp_path_factory):
    """Cohort A's keys (ending at END), their requests (2 on thor-01, 3 on thor-02), and a chat of each unit's first
    Open WebUI account."""
    path = roster(tmp_path_factory.mktemp("a"), "cohort-a", COHORT_A)
    code, output = playbook("keys", "-e", f"keys_roster={path}", "-e", "keys_cohort=A", "-e", f"keys_expires={END}")
    assert code == 0, output[-3000:]
    keys = raw_keys()
    for (alias, unit), n in zip(COHORT_A.items(), (2, 3), strict=True):
        assert chat(units[unit], keys[alias], n) == [200] * n
    signup = {"name": "Bo", "email": ACCOUNTS_A["thor-02"], "password": PASSWORD}
    status, body = http(units["thor-02"], "POST", f"{WEBUI}/api/v1/auths/signup", signup)
    assert status == 200 and body["role"] == "admin", body
    for unit, email in ACCOUNTS_A.items():
        form = {"chat": {"title": f"{unit} in cohort A", "messages": [{"role": "user", "content": "hello"}]}}
        status, body = http(units[unit], "POST", f"{WEBUI}/api/v1/chats/new", form, key=sign_in(units[unit], email))
        assert status == 200, body


@pytest.fixture(scope="module")
def cohort_b(tmp_path_factory):
    return roster(tmp_path_factory.mktemp("b"), "cohort-b", COHORT_B)


def test_cohort_a_keys_end_at_the_workshops_end(units, cohort_a):
    status, info = http(units["thor-01"], "GET", f"{LITELLM}/key/info", key=raw_keys()["alice-a"])
    assert status == 200, info
    stored = datetime.fromisoformat(info["info"]["expires"]).replace(tzinfo=UTC)
    assert abs(stored - datetime.fromisoformat(END)) < timedelta(seconds=60), info


def test_a_report_during_the_cohort_is_written_again_only_when_the_figures_moved(cohort_a):
    code, output = playbook("workshop_report", "-e", "workshop_cohort=A")
    assert code == 0, output[-3000:]
    (made,) = [name for name in reports() if name.endswith("-A")]
    rows = csv.DictReader((ARTIFACTS / "reports" / made / "attendees.csv").open())
    assert {row["alias"]: row["requests"] for row in rows} == {"alice-a": "2", "bob-a": "3"}
    code, output = playbook("workshop_report", "-e", "workshop_cohort=A")
    assert code == 0, output[-3000:]
    assert f"Already made (nothing used since): {ARTIFACTS / 'reports' / made}" in " ".join(output.split())
    assert not any(changed(output).values()), output.split("PLAY RECAP")[-1]
    assert [name for name in reports() if name.endswith("-A")] == [made]


def test_the_resets_check_mode_lists_who_loses_and_gets_a_key_and_which_accounts_go(units, cohort_a, cohort_b):
    before = reports()
    code, output = reset(cohort_b, "--check")
    assert code == 0, output[-3000:]
    text = " ".join(output.split())
    assert "thor-01: 1 keys of cohort A revoked (alice-a)" in text, output[-3000:]
    assert "thor-02: 1 keys of cohort A revoked (bob-a)" in text, output[-3000:]
    assert "Created: carol-b." in text and "Created: dave-b." in text, output[-3000:]
    for unit, email in ACCOUNTS_A.items():
        assert f"{unit}: 1 accounts ({email}) and 1 chats go, at the end of cohort A" in text, output[-3000:]
    # Nothing changed: A's keys work, their accounts sign in, no report was archived, no key of B was kept.
    keys = raw_keys()
    assert not set(COHORT_B) & set(keys)
    for alias, unit in COHORT_A.items():
        assert chat(units[unit], keys[alias]) == [200]
    for unit, email in ACCOUNTS_A.items():
        sign_in(units[unit], email)
    assert reports() == before


BAD_RESETS = {
    "an unknown cohort": ({"ending": "Z"}, "No key carries cohort 'Z' (workshop_cohort): the units' keys carry A"),
    "a reused alias": ({"reuse": True}, "reuses aliases of cohort A, whose revoked keys keep them: alice-a"),
    "a next cohort's name that no marker may carry": (
        {"args": ("-e", "keys_cohort=B/2")},
        "Give keys_cohort as a name matching thorfleet_cohort_pattern ^[A-Za-z0-9_.]+$, or none (got 'B/2')",
    ),
    "an end time in the past": (
        {"args": ("-e", "keys_expires=2020-01-01T00:00:00Z")},
        "'2020-01-01T00:00:00Z' is in the past",
    ),
}


@pytest.mark.parametrize("case", BAD_RESETS)
def test_bad_input_is_refused_before_any_change(units, cohort_a, cohort_b, tmp_path, case):
    how, message = BAD_RESETS[case]
    next_roster = (
        roster(tmp_path, "reuse", {"alice-a": "thor-01", "erin-b": "thor-02"}) if how.get("reuse") else cohort_b
    )
    code, output = reset(next_roster, *how.get("args", ()), ending=how.get("ending", "A"))
    assert code != 0
    assert message in " ".join(output.split()), output[-3000:]
    assert not any(changed(output).values()), output.split("PLAY RECAP")[-1]
    keys = raw_keys()
    for alias, unit in COHORT_A.items():
        assert chat(units[unit], keys[alias]) == [200]


def test_the_reset_ends_cohort_a_and_starts_cohort_b(units, cohort_a, cohort_b):
    started = time.monotonic()
    code, output = reset(cohort_b)
    seconds = time.monotonic() - started
    assert code == 0, output[-3000:]
    keys = raw_keys()
    for alias, unit in COHORT_A.items():
        assert chat(units[unit], keys[alias]) == [401], alias
    for alias, unit in COHORT_B.items():
        assert chat(units[unit], keys[alias]) == [200], alias
    handout = {row["alias"]: row["unit"] for row in csv.DictReader((ARTIFACTS / "keys" / "handout.csv").open())}
    assert {alias: handout.get(alias) for alias in COHORT_B} == COHORT_B and not set(COHORT_A) & set(handout)

    # The closing report: a folder of its own beside the one made during the cohort (A's keys were used since), its
    # rows what each unit's database holds for A's keys.
    _during, folder = [ARTIFACTS / "reports" / name for name in reports() if name.endswith("-A")]
    assert {p.name for p in folder.iterdir()} == {"attendees.csv", "totals.csv", "report.md", "tokens.png"}
    rows = {row["alias"]: row for row in csv.DictReader((folder / "attendees.csv").open())}
    assert set(rows) == set(COHORT_A)
    for alias, unit in COHORT_A.items():
        token = hashlib.sha256(keys[alias].encode()).hexdigest()
        requests, prompt, completion, spend, first, last = sql(
            units[unit],
            'SELECT count(*), sum(prompt_tokens), sum(completion_tokens), sum(spend), min("startTime"), '
            f"""max("startTime") FROM "LiteLLM_SpendLogs" WHERE api_key = '{token}'""",
        )
        row = rows[alias]
        assert (row["unit"], row["cohort"], row["requests"]) == (unit, "A", requests)
        assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
        assert float(row["spend_usd"]) == pytest.approx(float(spend), rel=1e-5) and float(spend) > 0
        # The database keeps UTC without saying so; the report says it.
        assert datetime.fromisoformat(row["first_use"]) == datetime.fromisoformat(first).replace(tzinfo=UTC)
        assert datetime.fromisoformat(row["last_use"]) == datetime.fromisoformat(last).replace(tzinfo=UTC)
    totals = {row["unit"]: row for row in csv.DictReader((folder / "totals.csv").open())}
    requests = {alias: int(row["requests"]) for alias, row in rows.items()}
    assert {unit: int(row["requests"]) for unit, row in totals.items()} == {
        "thor-01": requests["alice-a"],
        "thor-02": requests["bob-a"],
        "fleet": sum(requests.values()),
    }
    assert "| alias | unit | cohort |" in (folder / "report.md").read_text()
    assert (folder / "tokens.png").read_bytes().startswith(b"\x89PNG")

    # Open WebUI: the next cohort's first account becomes the admin and finds nobody of A, no chat; its key works.
    for unit, email in ACCOUNTS_B.items():
        host = units[unit]
        signup = {"name": "Next", "email": email, "password": PASSWORD}
        status, body = http(host, "POST", f"{WEBUI}/api/v1/auths/signup", signup)
        assert status == 200 and body["role"] == "admin", body
        token = body["token"]
        status, users = http(host, "GET", f"{WEBUI}/api/v1/users/all", key=token)
        assert status == 200 and [u["email"] for u in users["users"]] == [email], users
        status, chats = http(host, "GET", f"{WEBUI}/api/v1/chats/all/db", key=token)
        assert status == 200 and chats == [], chats
        question = {"model": MODEL, "messages": [{"role": "user", "content": "next"}], "stream": False, "max_tokens": 3}
        status, answer = http(host, "POST", f"{WEBUI}/api/chat/completions", question, key=token)
        assert status == 200 and answer["choices"][0]["message"]["content"], answer
    note(f"workshop_reset.yml, cohort A to B on {len(UNITS)} units with Open WebUI: {seconds:.1f} s")


def test_a_second_reset_changes_nothing(units, cohort_a, cohort_b):
    before = reports()
    code, output = reset(cohort_b)
    assert code == 0, output[-3000:]
    assert not any(changed(output).values()), output.split("PLAY RECAP")[-1]
    assert reports() == before
    for unit, email in ACCOUNTS_B.items():  # the next cohort's accounts stay
        sign_in(units[unit], email)


def test_a_key_ends_at_its_end_time(units, late):
    ends, key = late
    time.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds() + 2))
    question = {"model": MODEL, "messages": [{"role": "user", "content": "late"}], "max_tokens": 2}
    status, body = http(units["thor-01"], "POST", f"{LITELLM}/v1/chat/completions", question, key=key)
    assert status == 401 and "Expired Key" in str(body), body


def test_status_counts_the_working_keys_that_end_within_the_hour(tmp_path):
    """After the reset: B's keys end at END; A's are revoked and late has ended, so they do not count."""
    code, output = playbook("status", "-e", f"status_dir={tmp_path}")
    assert code == 0, output[-3000:]
    table = {row["unit"]: row["ending within 1 h"] for row in csv.DictReader((tmp_path / "status.csv").open())}
    assert table == dict.fromkeys(UNITS, "1")


def test_the_days_end_ends_cohort_b_and_starts_none(units, cohort_b):
    """After the status table (which counts B's working keys): B ends without a next cohort."""
    code, output = playbook("workshop_reset", "-e", "workshop_cohort=B", "-e", "keys_cohort=C")
    assert code != 0
    assert "keys_cohort 'C' has no roster" in " ".join(output.split()), output[-3000:]
    assert not any(changed(output).values()), output.split("PLAY RECAP")[-1]
    keys = raw_keys()
    assert chat(units["thor-01"], keys["carol-b"]) == [200]

    before = reports()
    code, output = playbook("workshop_reset", "-e", "workshop_cohort=B")
    assert code == 0, output[-3000:]
    for alias, unit in COHORT_B.items():
        assert chat(units[unit], keys[alias]) == [401], alias
    (made,) = [name for name in reports() if name not in before]
    assert made.endswith("-B")
    rows = csv.DictReader((ARTIFACTS / "reports" / made / "attendees.csv").open())
    assert {row["alias"]: row["requests"] for row in rows} == {"carol-b": "2", "dave-b": "1"}
    # Open WebUI is empty again: whoever signs up first becomes its admin and finds nobody of B.
    for unit in UNITS:
        signup = {"name": "After", "email": f"after-{unit}@example.org", "password": PASSWORD}
        status, body = http(units[unit], "POST", f"{WEBUI}/api/v1/auths/signup", signup)
        assert status == 200 and body["role"] == "admin", body
        status, users = http(units[unit], "GET", f"{WEBUI}/api/v1/users/all", key=body["token"])
        assert status == 200 and [u["email"] for u in users["users"]] == [signup["email"]], users
