"""site.yml's preflight refuses every bad input of the preflight scenario with its message, here without a unit.

The scenario (molecule/preflight) proves on a simulated unit that nothing changes; this runs its cases through the same
play on the controller alone, one inventory host per case, in one run. jetson_runtime's preflight reads the unit, so
its cases (and its task) are the scenario's only, as are the hosts pattern's (tests/unit/test_hosts_check.py).
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from ansible_collections.thorfleet.llm.plugins.test import numbers

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = Path(numbers.__file__).parents[5]  # the root the tests import the collection from
UNIT_ONLY = "thorfleet.llm.jetson_runtime"


def scenario_cases() -> dict:
    path = REPO / "molecule" / "preflight" / "tests" / "test_bad_input.py"
    spec = importlib.util.spec_from_file_location("preflight_scenario", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


CASES = {
    name: case
    for name, case in scenario_cases().items()
    if not any(var.startswith("jetson_runtime_") or var == "thorfleet_hosts" for var in case[0])
}
# Settings that look odd but are right, which the preflight must let through.
GOOD = {
    "the defaults": {},
    "numbers given as -e key=value": {
        "litellm_proxy_port": "12434",
        "vllm_server_gpu_memory_utilization": "0.85",
        "vllm_server_stop_timeout": "45",
        "postgres_backup_keep": "3",
    },
    "a password with characters a URL gives a meaning to": {"postgres_password": "p@ss/w#rd:50%?&=+ [x]~"},
    "an image by tag and digest": {"container_images_postgres": "postgres:17.6@sha256:" + "0123456789abcdef" * 4},
    "a LiteLLM release at the floor, by its stable tag": {
        "container_images_litellm": "ghcr.io/berriai/litellm:v1.84.0-stable"
    },
    "a model name once per unit, by the deployment's id": {
        "litellm_proxy_models": [
            {"model_name": "m", "api_base": f"http://10.0.0.{n}:8000/v1", "id": f"thor-0{n}"} for n in (1, 2)
        ]
    },
    "an older LiteLLM with the floor lowered": {
        "container_images_litellm": "ghcr.io/berriai/litellm:v1.83.7-stable",
        "container_images_litellm_minimum": "1.83.7",
    },
}
HOSTS = {name: f"case-{number:02d}" for number, name in enumerate([*CASES, *GOOD])}
# The master key as `echo KEY | ansible-vault encrypt_string` makes it: vaulted, ending in a line break.
VAULTED = "case-vaulted"
VAULT_PASSWORD = "preflight-only-vault-password"
# Stand-ins for the inventory's vault: valid, so that each case fails on its own input alone.
SECRETS = {
    "litellm_proxy_master_key": "sk-preflight-only-0123456789abcdefghij",
    "litellm_proxy_salt_key": "preflight-only-salt-key",
    "postgres_password": "preflight-only-password",
    "metrics_proxy_token": "preflight-only-metrics-token-0123456789",
    "open_webui_secret_key": "preflight-only-open-webui-secret-0123456789",
}
FAILED = re.compile(r"^(?:fatal|failed): \[([^\]]+)\].*? => (\{.*\})$", re.M)


def preflight_play() -> list:
    """site.yml's play that checks the settings, without the tasks that reach a host (the unit's runtime and stack,
    the cache source)."""
    play = next(play for play in yaml.safe_load((REPO / "playbooks" / "site.yml").read_text()) if "tasks" in play)
    reaching = [(UNIT_ONLY, "preflight"), ("thorfleet.llm.model_cache", "source"), ("thorfleet.llm.stack", "group")]
    tasks = [
        task
        for task in play["tasks"]
        if tuple(task.get("ansible.builtin.import_role", {}).get(key) for key in ("name", "tasks_from")) not in reaching
    ]
    assert len(tasks) == len(play["tasks"]) - len(reaching)
    return [{**play, "tasks": tasks}]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict:
    """Host -> the messages of its failed results, for every case in one run."""
    tmp = tmp_path_factory.mktemp("preflight")
    hosts = {HOSTS[name]: extra for name, (extra, _message) in CASES.items()}
    hosts.update({HOSTS[name]: extra for name, extra in GOOD.items()})
    hosts[VAULTED] = {}  # its key comes from host_vars, as from an inventory's vault
    inventory = {
        "all": {
            # Shown, so that each host's failed result carries its message (the scenario runs with no_log as set).
            "vars": {"ansible_connection": "local", "thorfleet_no_log": False, **SECRETS},
            "hosts": {"cache_source": {}},
            "children": {"thor": {"hosts": hosts}},
        }
    }
    (tmp / "inventory.json").write_text(json.dumps(inventory))
    vault = VaultLib([("default", VaultSecret(VAULT_PASSWORD.encode()))])
    vaulted = vault.encrypt("sk-" + "a" * 40 + "\n").decode()
    (tmp / "host_vars").mkdir()
    (tmp / "host_vars" / f"{VAULTED}.yml").write_text(
        "litellm_proxy_master_key: !vault |\n" + "".join(f"  {line}\n" for line in vaulted.splitlines())
    )
    (tmp / "vault-password").write_text(VAULT_PASSWORD)
    (tmp / "preflight.yml").write_text(yaml.safe_dump(preflight_play(), sort_keys=False))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1"}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
    run = subprocess.run(
        [
            Path(sys.executable).with_name("ansible-playbook"),
            "-i",
            tmp / "inventory.json",
            "--vault-password-file",
            tmp / "vault-password",
            tmp / "preflight.yml",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    messages = {}
    for host, result in FAILED.findall(run.stdout):
        parsed = json.loads(result)
        messages.setdefault(host, []).append(" ".join([parsed.get("msg", ""), *parsed.get("argument_errors", [])]))
    return messages


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_with_the_variable_named(refusals, name):
    extra, message = CASES[name]
    assert HOSTS[name] in refusals, f"{extra} was not refused"
    assert any(message in printed for printed in refusals[HOSTS[name]]), refusals[HOSTS[name]]


def test_a_vaulted_key_with_a_final_line_break_is_refused(refusals):
    assert any("litellm_proxy_master_key starts or ends with a space or a line break" in m for m in refusals[VAULTED])


@pytest.mark.parametrize("name", list(GOOD))
def test_good_input_passes(refusals, name):
    assert HOSTS[name] not in refusals, refusals[HOSTS[name]]
