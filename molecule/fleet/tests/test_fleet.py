"""Fleet operations on three simulated units: drift reported by --check and healed by one run, status,
ordered stop and start, log collection, the roster's keys (the handout, limits, the spend report, bad rosters, a lost
database), and faults confined to the unit that has them.

The tests run in file order and share the fleet: spend is made first, drift is injected, checked and healed, the keys
are tried, and the faults come last. Units are reached from the controller through the Docker SDK, as the simulator
does. LiteLLM listens on another port than its default (hosts.yml): every playbook must follow it.
"""

import csv
import hashlib
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import docker
import pytest
import yaml
from scenario import PROJECT, Secrets, playbook

FLEET = os.environ["MOLECULE_SCENARIO_NAME"]
INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
ARTIFACTS = INVENTORY.with_name("inventory.artifacts")  # keys.yml keeps the raw keys beside the inventory
SCENARIO = PROJECT / "molecule" / "fleet"
ROSTER = SCENARIO / "roster.csv"
KEYS = ["-e", f"keys_roster={ROSTER}", "-e", json.dumps({"keys_organisers": [{"alias": "organiser"}]})]
UNITS = ["thor-01", "thor-02", "thor-03"]
MODEL = "Qwen3-VL-30B-A3B"
PORT = 14434
SERVICES = ["ai-postgres", "ai-vllm", "ai-litellm"]
# thor-02 also runs the metrics proxy (hosts.yml), so that the network drift there reaches it too.
CONTAINERS = {"thor-01": SERVICES, "thor-02": [*SERVICES, "ai-metrics"], "thor-03": SERVICES}
BLOBS = "/opt/thorfleet/data/models/huggingface/hub/models--cyankiwi--Qwen3-VL-30B-A3B-Instruct-AWQ-4bit/blobs"
JSON_OUTPUT = {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
# What site.yml --check must report as changed on each unit for the drift drift.yml injects.
CHECK_CHANGES = {
    "thor-01": {
        "jetson_runtime : Start the engine",
        "jetson_runtime : Merge the nvidia default runtime into daemon.json",
        "jetson_runtime : Restart docker",
    },
    # Every service makes the network through _common: one task name, reported changed by each in check mode.
    "thor-02": {
        "_common : Make the service's folders and the unit's private network, and look at the container and its image",
        "postgres : Run PostgreSQL",
        "vllm_server : Run vLLM",
        "litellm_proxy : Write config.yaml",
        "litellm_proxy : Run LiteLLM",
        "metrics_proxy : Run the metrics proxy",
        "model_cache : Verify the unit's copy",
    },
    "thor-03": {"model_cache : Verify the unit's copy", "vllm_server : Run vLLM", "postgres : Run PostgreSQL"},
}
# What drift.yml adds by hand to the containers it recreates on thor-03, each gone once healed.
BY_HAND = {"ai-vllm": "VLLM_FOO=1", "ai-postgres": "POSTGRES_FOO=1"}


def unit(name):
    return docker.from_env().containers.get(f"{FLEET}-{name}")


def run(name, argv):
    """(exit code, output) of argv on the unit."""
    code, out = unit(name).exec_run(argv)
    return code, out.decode()


def sh(name, command):
    code, out = run(name, ["sh", "-c", command])
    assert code == 0, f"{name}: {command}: {out}"
    return out.strip()


def sql(name, query):
    return sh(name, f"docker exec ai-postgres psql -U litellm -d litellmdb -tAc {shlex.quote(query)}").splitlines()


def inspect(name, container):
    return json.loads(sh(name, f"docker inspect {container}"))[0]


def answers(name, key, n=1):
    """(status, Retry-After) of n chat requests through the unit's LiteLLM with `key`."""
    script = f"""
import json, urllib.request, urllib.error
for _ in range({n}):
    req = urllib.request.Request("http://127.0.0.1:{PORT}/v1/chat/completions", method="POST",
        data=json.dumps({{"model": {MODEL!r}, "messages": [{{"role": "user", "content": "hello"}}],
                          "max_tokens": 4}}).encode(),
        headers={{"Content-Type": "application/json", "Authorization": "Bearer " + {key!r}}})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            print(json.dumps([r.status, None]))
    except urllib.error.HTTPError as e:
        print(json.dumps([e.code, e.headers.get("retry-after")]))
"""
    return [tuple(json.loads(line)) for line in sh(name, f"python3 -c {shlex.quote(script)}").splitlines()]


def chat(name, key, n=1):
    """Status codes of n chat requests through the unit's LiteLLM with `key`."""
    return [status for status, _ in answers(name, key, n)]


def rows(name):
    """Every key and spend row in the unit's PostgreSQL."""
    return {
        "keys": sql(name, 'SELECT token FROM "LiteLLM_VerificationToken" ORDER BY 1'),
        "spend": sql(name, 'SELECT request_id FROM "LiteLLM_SpendLogs" ORDER BY 1'),
    }


def fingerprint(name):
    """What drift and healing change on a unit, read without starting anything."""
    state = {"docker": run(name, ["systemctl", "is-active", "docker.service", "docker.socket"])[1].split()}
    state["daemon.json"] = sh(name, "cat /etc/docker/daemon.json")
    state["config.yaml"] = sh(name, "md5sum /etc/thorfleet/litellm/config.yaml")
    if state["docker"][0] == "active":
        state["containers"] = sh(name, "docker ps -a --format '{{.Names}} {{.ID}} {{.State}}' | sort")
        state["networks"] = sh(name, "docker network ls --format '{{.Name}}' | sort")
        if "ai-postgres" in state["containers"] and "ai-postgres" in sh(name, "docker ps --format '{{.Names}}'"):
            state["key rows"] = sql(name, 'SELECT key_alias, rpm_limit FROM "LiteLLM_VerificationToken" ORDER BY 1')
    return state


def json_run(output):
    """The ansible.posix.json callback's document in a playbook's output (warnings go around it)."""
    lines = output.splitlines()
    return json.loads("\n".join(lines[lines.index("{") : len(lines) - lines[::-1].index("}")]))


def changed_tasks(document):
    changed = {}
    for play in document["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("changed"):
                    changed.setdefault(host, {})[task["task"]["name"].removeprefix("thorfleet.llm.")] = result
    return changed


def recap(output):
    """{unit: {ok, changed, unreachable, failed}} from the PLAY RECAP."""
    pattern = r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
    return {
        m[1]: dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()[1:]), strict=True))
        for m in re.finditer(pattern, output, re.MULTILINE)
    }


@pytest.fixture(scope="module")
def raw_keys():
    return Secrets(yaml.safe_load((ARTIFACTS / "keys" / "raw-keys.yml").read_text()))


@pytest.fixture(scope="module")
def before(raw_keys):
    """Spend on every unit through attendee keys, then every key and spend row."""
    for name, alias in (("thor-01", "alice"), ("thor-02", "bob"), ("thor-03", "carol"), ("thor-03", "dave")):
        assert chat(name, raw_keys[alias], n=2) == [200, 200]
    snapshot = {name: rows(name) for name in UNITS}
    assert all(len(snapshot[name]["spend"]) >= 2 for name in UNITS)
    return snapshot


def test_check_reports_every_drift_and_changes_nothing(before):
    rc, output = playbook(str(SCENARIO / "drift.yml"))
    assert rc == 0, output[-3000:]
    drifted = {name: fingerprint(name) for name in UNITS}

    rc, output = playbook("site", "--check", "--diff", env=JSON_OUTPUT)
    assert rc == 0, output[-3000:]
    document = json_run(output)
    assert all(s["failures"] == 0 and s["unreachable"] == 0 for s in document["stats"].values()), document["stats"]
    changed = changed_tasks(document)
    assert {name: set(changed.get(name, {})) for name in UNITS} == CHECK_CHANGES
    config_diff = json.dumps(changed["thor-02"]["litellm_proxy : Write config.yaml"]["diff"])
    assert "request_timeout: 5" in config_diff and "request_timeout: 600" in config_diff
    # vLLM's task shows its diff (no secret in its environment): every property changed by hand is in it. The
    # variable, the published port and the mount are what Docker compares only when told to compare strictly.
    vllm_diff = changed["thor-03"]["vllm_server : Run vLLM"]["diff"]
    assert {"command", "env", "published_ports", "mounts"} <= set(vllm_diff["before"]), vllm_diff
    assert "VLLM_FOO=1" in vllm_diff["before"]["env"] and "VLLM_FOO=1" not in vllm_diff["after"]["env"]

    # Keys are read through LiteLLM, which runs with its database on thor-03 only (the drift stopped the others).
    rc, output = playbook("keys", "--check", "--diff", "--limit", "localhost,thor-03", *KEYS, env=JSON_OUTPUT)
    assert rc == 0, output[-3000:]
    reports = [
        result["msg"]
        for play in json_run(output)["plays"]
        for task in play["tasks"]
        if task["task"]["name"].removeprefix("thorfleet.llm.") == "keys : Report what changed"
        for result in task["hosts"].values()
    ]
    assert reports == ["thor-03: 1 created, 1 updated, 0 deleted, 1 unchanged. Created: dave."]

    assert {name: fingerprint(name) for name in UNITS} == drifted


def test_one_run_heals_every_drift_and_keeps_every_row(before, raw_keys):
    # The heal: site.yml for the units and their service, keys.yml for the keys (they come from the roster).
    rc, output = playbook("site")
    assert rc == 0, output[-3000:]
    rc, output = playbook("keys", *KEYS)
    assert rc == 0, output[-3000:]

    for name in UNITS:
        assert json.loads(sh(name, "cat /etc/docker/daemon.json"))["default-runtime"] == "nvidia"
        assert sh(name, "docker info --format '{{.DefaultRuntime}}'") == "nvidia"
        assert run(name, ["nvidia-smi", "-L"])[0] == 0
        for container in CONTAINERS[name]:
            info = inspect(name, container)
            assert info["State"]["Running"], f"{name}: {container}"
            assert list(info["NetworkSettings"]["Networks"]) == ["infra-thor"], f"{name}: {container}"
        assert "request_timeout: 600" in sh(name, "cat /etc/thorfleet/litellm/config.yaml")
    # The deleted and the corrupted cache file are back, as on the untouched unit.
    weights = {name: sh(name, f"cd {BLOBS} && sha256sum * | sort") for name in UNITS}
    assert weights["thor-02"] == weights["thor-03"] == weights["thor-01"]
    commands = {name: inspect(name, "ai-vllm")["Config"]["Cmd"] for name in UNITS}
    assert commands["thor-03"] == commands["thor-01"] == commands["thor-02"]
    for container, variable in BY_HAND.items():
        infos = {name: inspect(name, container) for name in UNITS}
        for name, info in infos.items():
            assert variable not in info["Config"]["Env"], f"{name}: {container}"
            assert not info["HostConfig"]["PortBindings"], f"{name}: {container} publishes a port"
        mounts = {name: sorted(m["Destination"] for m in info["Mounts"]) for name, info in infos.items()}
        assert mounts["thor-03"] == mounts["thor-01"] == mounts["thor-02"], container
    assert sql("thor-03", "SELECT rpm_limit FROM \"LiteLLM_VerificationToken\" WHERE key_alias = 'carol'") == ["10"]
    for name, alias in (("thor-01", "alice"), ("thor-02", "bob"), ("thor-03", "carol"), ("thor-03", "dave")):
        assert chat(name, raw_keys[alias]) == [200], f"{alias} on {name}"

    after = {name: rows(name) for name in UNITS}
    for name in UNITS:
        assert after[name]["keys"] == before[name]["keys"], name
        assert set(before[name]["spend"]) <= set(after[name]["spend"]), name
    # The requests just made are the only new spend rows: one per unit, two on thor-03.
    assert [len(after[n]["spend"]) - len(before[n]["spend"]) for n in UNITS] == [1, 1, 2]


def test_status_is_one_table_for_the_fleet(tmp_path):
    rc, output = playbook("status", "-v", "-e", f"status_dir={tmp_path}")
    assert rc == 0, output[-3000:]
    secrets = yaml.safe_load((PROJECT / "inventories/sim/group_vars/thor/generated.yml").read_text())
    written = output + (tmp_path / "status.md").read_text() + (tmp_path / "status.csv").read_text()
    for secret in ("postgres_password", "litellm_proxy_master_key", "litellm_proxy_salt_key"):
        assert secrets[secret] not in written, secret
    table = list(csv.DictReader((tmp_path / "status.csv").open()))
    assert [row["unit"] for row in table] == UNITS
    for row in table:
        name = row["unit"]
        assert row["default runtime"] == "nvidia"
        assert row["NVML"] == "ok"
        assert row["power mode"] == "MAXN"
        assert row["cache manifest"].startswith("complete (")
        assert row["vLLM serves"] == MODEL
        # vLLM's gauges, from its /metrics: an idle unit.
        assert (row["running"], row["waiting"], row["KV cache"]) == ("0", "0", "0.0%")
        assert (row["LiteLLM ready"], row["db"]) == ("yes", "connected")
        assert int(row["keys"]) == len(sql(name, 'SELECT token FROM "LiteLLM_VerificationToken"'))
        spend = float(sql(name, 'SELECT COALESCE(SUM(spend), 0) FROM "LiteLLM_VerificationToken"')[0])
        assert float(row["spend (USD)"]) == pytest.approx(spend, abs=1e-6)
        assert spend > 0
    markdown = (tmp_path / "status.md").read_text()
    assert markdown.startswith("| unit | default runtime | NVML | power mode | cache manifest |")
    assert all(f"| {name} | nvidia | ok | MAXN | complete (" in markdown for name in UNITS)
    assert "| thor-03 | nvidia | ok | MAXN | complete (" in output


def test_stop_and_start_follow_the_dependency_order(raw_keys):
    rc, output = playbook("stop")
    assert rc == 0, output[-3000:]
    for name in UNITS:
        states = {c: inspect(name, c)["State"] for c in SERVICES}
        assert not any(s["Running"] for s in states.values()), name
        finished = [states[c]["FinishedAt"] for c in ("ai-litellm", "ai-vllm", "ai-postgres")]
        assert finished == sorted(finished), f"{name} stopped out of order: {finished}"
        # vLLM drained and exited on SIGTERM within its stop timeout: not killed (137).
        assert states["ai-vllm"]["ExitCode"] == 0, name

    rc, output = playbook("start")
    assert rc == 0, output[-3000:]
    for name in UNITS:
        started = [inspect(name, c)["State"]["StartedAt"] for c in SERVICES]
        assert started == sorted(started), f"{name} started out of order: {started}"
    assert "vLLM was already serving" not in output  # each unit's vLLM went through the gate after its start
    for name, alias in (("thor-01", "alice"), ("thor-02", "bob"), ("thor-03", "carol")):
        assert chat(name, raw_keys[alias]) == [200], name


def test_collect_logs_gathers_each_unit_on_the_controller(tmp_path):
    rc, output = playbook("collect_logs", "-e", f"jetson_runtime_logs_dir={tmp_path}")
    assert rc == 0, output[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == UNITS
    for name in UNITS:
        folder = tmp_path / name
        assert {f"{c}.log" for c in SERVICES} <= {p.name for p in folder.iterdir()}
        assert all((folder / f"{c}.log").stat().st_size > 0 for c in SERVICES), name
        assert json.loads((folder / "docker-info.json").read_text())["DefaultRuntime"] == "nvidia"
        kernel = (folder / "kernel.log").read_text()
        assert kernel.strip(), name
        assert oct((folder / "ai-vllm.log").stat().st_mode & 0o777) == "0o600"


# The roster's keys (keys.yml in converge.yml).


def test_handout_lists_every_key_privately(raw_keys):
    handout = ARTIFACTS / "keys" / "handout.csv"
    assert oct(handout.stat().st_mode & 0o777) == "0o600"
    assert oct((ARTIFACTS / "keys" / "raw-keys.yml").stat().st_mode & 0o777) == "0o600"
    rows = list(csv.DictReader(handout.open()))
    roster = {r["alias"]: r["unit"] for r in csv.DictReader(ROSTER.open())}
    assert {r["alias"]: r["unit"] for r in rows if r["alias"] in roster} == roster
    assert {r["unit"] for r in rows if r["alias"] == "organiser"} == set(UNITS)
    assert all(r["key"] == raw_keys[r["alias"]] and r["base_url"].endswith(f":{PORT}/v1") for r in rows)


def test_the_inventory_holds_only_the_units():
    """The keys and reports written beside the inventory are not read as inventory."""
    listed = subprocess.run(
        ["ansible-inventory", "-i", str(INVENTORY), "--list"], capture_output=True, text=True, check=True
    )
    groups = json.loads(listed.stdout)
    hosts = {host for group in groups.values() if isinstance(group, dict) for host in group.get("hosts", [])}
    assert hosts == {*UNITS, "cache_source"}
    assert "WARNING" not in listed.stderr, listed.stderr


def test_an_attendee_key_works_on_its_own_unit_only(raw_keys):
    assert chat("thor-01", raw_keys["alice"]) == [200]
    assert chat("thor-01", raw_keys["organiser"]) == [200]
    assert chat("thor-01", raw_keys["bob"]) == [401]  # bob's unit is thor-02


def test_over_the_rpm_limit_is_429_with_retry_after(raw_keys):
    results = answers("thor-01", raw_keys["erin"], n=3)  # erin: rpm_limit 2, used nowhere else
    assert [status for status, _ in results[:2]] == [200, 200]
    status, retry_after = results[2]
    assert status == 429
    assert retry_after is not None and int(retry_after) > 0


def test_spend_report_adds_up_what_the_database_holds(raw_keys):
    assert chat("thor-01", raw_keys["alice"], n=2) == [200, 200]
    rc, output = playbook("spend_report")
    assert rc == 0, output[-3000:]
    assert "alice" in output and "Written: " in output
    report = {(row["unit"], row["alias"]): row for row in csv.DictReader((ARTIFACTS / "reports" / "spend.csv").open())}
    roster = {(r["unit"], r["alias"]) for r in csv.DictReader(ROSTER.open())}
    assert set(report) == roster | {(name, "organiser") for name in UNITS}
    token = hashlib.sha256(raw_keys["alice"].encode()).hexdigest()
    (spent,) = sql(
        "thor-01", f"""SELECT count(*), sum(total_tokens) FROM "LiteLLM_SpendLogs" WHERE api_key = '{token}'"""
    )
    requests, tokens = spent.split("|")
    (spend,) = sql("thor-01", f"""SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = '{token}'""")
    alice = report[("thor-01", "alice")]
    assert int(requests) >= 3 and int(tokens) > 0
    assert (alice["requests"], alice["total_tokens"]) == (requests, tokens)
    assert float(alice["spend_usd"]) == pytest.approx(float(spend), rel=1e-5) and float(spend) > 0
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
    store = (ARTIFACTS / "keys" / "raw-keys.yml").read_bytes()
    rc, output = playbook("keys", "-e", f"keys_roster={roster}")
    assert rc != 0
    assert message in output, output[-2000:]
    assert not any(f"{name} " in output.split("PLAY RECAP")[-1] for name in UNITS)  # the units were never reached
    assert (ARTIFACTS / "keys" / "raw-keys.yml").read_bytes() == store


def test_keys_come_back_after_the_database_is_lost(raw_keys):
    sh("thor-01", "docker rm -f ai-postgres && rm -rf /var/lib/thorfleet/postgres")
    rc, output = playbook("site", "--limit", "thor-01")
    assert rc == 0, output[-3000:]
    assert chat("thor-01", raw_keys["alice"]) == [401]  # a new, empty database
    rc, output = playbook("keys", *KEYS)
    assert rc == 0, output[-3000:]
    assert chat("thor-01", raw_keys["alice"]) == [200]
    for secret in raw_keys.values():
        assert secret not in output


def test_faults_stay_on_their_unit(tmp_path):
    """thor-01 unreachable, thor-02 without NVML: thor-03 converges, and the recap names both."""
    unit("thor-01").stop(timeout=30)
    sh("thor-02", "mkdir -p /run/thorsim && touch /run/thorsim/nvml-lost")
    try:
        rc, output = playbook("site")
        assert rc != 0
        counts = recap(output)
        assert set(counts) >= set(UNITS), output[-3000:]
        # Over SSH a stopped unit is UNREACHABLE; community.docker.docker, pipelining, reports the module as
        # failed with Docker's answer instead. Either way the recap names it and nothing else ran there: only the
        # controller's argument checks came before its first call on the unit, which is where it stopped.
        assert counts["thor-01"]["unreachable"] + counts["thor-01"]["failed"] == 1
        assert re.search(r"\[thor-01\].*(UNREACHABLE|is not running)", output)
        ran = [task for task in output.split("TASK [")[1:] if re.search(r"^(ok|changed): \[thor-01\]", task, re.M)]
        assert all(" : Validating arguments against arg spec" in task.split("]", 1)[0] for task in ran), ran
        assert counts["thor-02"]["failed"] == 1 and counts["thor-02"]["unreachable"] == 0
        assert counts["thor-03"]["failed"] == 0 and counts["thor-03"]["unreachable"] == 0
        assert re.search(r"NVML does not answer on thor-02.*Remedy:", output, re.DOTALL)
        assert "NVML does not answer on thor-03" not in output

        rc, output = playbook("status", "-e", f"status_dir={tmp_path}")
        assert rc == 0, output[-3000:]
        table = {row["unit"]: row for row in csv.DictReader((tmp_path / "status.csv").open())}
        assert table["thor-01"]["default runtime"].startswith("unreachable")
        assert table["thor-02"]["NVML"].startswith("FAILED: Failed to initialize NVML")
        assert table["thor-03"]["NVML"] == "ok"
    finally:
        sh("thor-02", "rm -f /run/thorsim/nvml-lost")
        unit("thor-01").start()
