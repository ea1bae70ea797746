"""site.yml refuses bad settings before it changes anything, and the message names the variable: every case in one
run, each refused on its own."""

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from scenario import playbook

CASES = {
    "gpu memory above 1": ({"vllm_server_gpu_memory_utilization": 1.5}, "vllm_server_gpu_memory_utilization"),
    "gpu memory of 0": ({"vllm_server_gpu_memory_utilization": 0}, "vllm_server_gpu_memory_utilization"),
    "unknown profile": ({"vllm_server_profile": "llama-9000"}, "vllm_server_profile 'llama-9000' is not a profile"),
    "publicly known master key": ({"litellm_proxy_master_key": "sk-1234"}, "litellm_proxy_master_key"),
    "short master key": ({"litellm_proxy_master_key": "sk-short"}, "litellm_proxy_master_key"),
    "master key without sk-": ({"litellm_proxy_master_key": "x" * 40}, "litellm_proxy_master_key"),
    "master key with a space": ({"litellm_proxy_master_key": "sk-" + "a" * 30 + " b"}, "litellm_proxy_master_key"),
    "missing postgres password": ({"postgres_password": ""}, "postgres_password"),
    "short postgres password": ({"postgres_password": "hunter2"}, "postgres_password"),
    "missing salt key": ({"litellm_proxy_salt_key": ""}, "litellm_proxy_salt_key"),
    "main-latest tag": (
        {"container_images_litellm": "ghcr.io/berriai/litellm:main-latest"},
        "Image 'ghcr.io/berriai/litellm:main-latest' is not allowed",
    ),
    "latest tag": (
        {"container_images_vllm": "nvcr.io/nvidia/vllm:latest"},
        "Image 'nvcr.io/nvidia/vllm:latest' is not",
    ),
    "no tag": ({"container_images_postgres": "postgres"}, "'postgres' is not allowed"),
    "compromised litellm": (
        {"container_images_litellm": "ghcr.io/berriai/litellm:v1.82.7"},
        "LiteLLM 1.82.7 ('ghcr.io/berriai/litellm:v1.82.7', container_images_litellm) is never accepted",
    ),
    # The simulated fleet's LiteLLM carries the simulator's version, so its inventory sets no floor.
    "litellm older than the floor": (
        {
            "container_images_litellm": "ghcr.io/berriai/litellm:v1.83.7-stable",
            "container_images_litellm_minimum": "1.84.0",
        },
        "LiteLLM 1.83.7 ('ghcr.io/berriai/litellm:v1.83.7-stable', container_images_litellm) is older than "
        "container_images_litellm_minimum (1.84.0): 1.83.7 fixed a pre-authentication SQL injection",
    ),
    "a floor that is no release": (
        {"container_images_litellm_minimum": "latest"},
        "container_images_litellm_minimum must be a release such as 1.84.0",
    ),
    "port out of range": ({"litellm_proxy_port": 70000}, "litellm_proxy_port must be 1-65535"),
    "port zero": ({"litellm_proxy_port": 0}, "litellm_proxy_port must be 1-65535"),
    "max model length 0": ({"vllm_server_settings": {"max_model_len": 0}}, "max_model_len must be a positive"),
    "max model length negative": ({"vllm_server_settings": {"max_model_len": -4}}, "max_model_len must be a positive"),
    "stop timeout not above drain": ({"vllm_server_stop_timeout": 10}, "vllm_server_stop_timeout (10) must exceed"),
    "unknown image source": ({"container_images_source": "ftp"}, "container_images_source must be"),
    "unknown power mode": ({"jetson_runtime_power_mode": 7}, "jetson_runtime_power_mode must be"),
    "negative price": (
        {"litellm_proxy_models": [{"model_name": "m", "api_base": "http://x/v1", "input_cost_per_million": -1}]},
        "litellm_proxy_models",
    ),
    "duplicate model names": (
        {"litellm_proxy_models": [{"model_name": "m", "api_base": "http://x/v1"}] * 2},
        "litellm_proxy_models",
    ),
    "one deployment id twice": (
        {"litellm_proxy_models": [{"model_name": "m", "api_base": "http://x/v1", "id": "thor-01"}] * 2},
        "each model_name given once (or once per id",
    ),
    "health check interval as a float": (
        {"litellm_proxy_general_settings": {"background_health_checks": True, "health_check_interval": 5.0}},
        "litellm_proxy_general_settings.health_check_interval must be a whole number of seconds, 1 or more (got 5.0)",
    ),
    "health check interval among the router's settings": (
        {"litellm_proxy_router_settings": {"health_check_interval": 5}},
        "never in litellm_proxy_router_settings",
    ),
    "unsupported L4T": ({"jetson_runtime_supported_l4t": ["36.4"]}, "jetson_runtime_supported_l4t"),
    "unsupported architecture": ({"jetson_runtime_supported_architectures": ["aarch64"]}, "on x86_64"),
    "open webui port out of range": (
        {"open_webui_enabled": True, "open_webui_port": 70000},
        "open_webui_port must be 1-65535",
    ),
    "open webui on litellm's port": (
        {"open_webui_enabled": True, "open_webui_port": 12434},
        "open_webui_port must be 1-65535 and differ from litellm_proxy_port",
    ),
    "open webui without its secret key": (
        {"open_webui_enabled": True, "open_webui_secret_key": ""},
        "open_webui_secret_key must come from Ansible Vault",
    ),
    "open webui talking to vllm": (
        {"open_webui_enabled": True, "open_webui_litellm_url": "http://ai-vllm:8000/v1"},
        "open_webui_litellm_url must be the unit's LiteLLM",
    ),
    "metrics proxy token too short": (
        {"metrics_proxy_enabled": True, "metrics_proxy_token": "short"},
        "metrics_proxy_token must come from Ansible Vault: at least 32 characters",
    ),
    "metrics proxy on litellm's port": (
        {"metrics_proxy_enabled": True, "metrics_proxy_port": 12434},
        "metrics_proxy_port must be 1-65535 and not LiteLLM's port",
    ),
    "open webui main tag": (
        {"open_webui_enabled": True, "container_images_open_webui": "ghcr.io/open-webui/open-webui:main"},
        "Image 'ghcr.io/open-webui/open-webui:main' is not allowed",
    ),
    # What `echo KEY | ansible-vault encrypt_string` and a YAML `|` block give: a secret ending in a line break.
    "master key with a final line break": (
        {"litellm_proxy_master_key": "sk-" + "a" * 40 + "\n"},
        "litellm_proxy_master_key starts or ends with a space or a line break",
    ),
    "salt key with a final line break": (
        {"litellm_proxy_salt_key": "s" * 24 + "\n"},
        "litellm_proxy_salt_key starts or ends with a space or a line break",
    ),
    "postgres password with a final line break": (
        {"postgres_password": "p" * 24 + "\n"},
        "postgres_password starts or ends with a space or a line break",
    ),
    "postgres password with a leading space": (
        {"postgres_password": " " + "p" * 24},
        "postgres_password starts or ends with a space or a line break",
    ),
    "metrics token with a final line break": (
        {"metrics_proxy_enabled": True, "metrics_proxy_token": "t" * 40 + "\n"},
        "metrics_proxy_token starts or ends with a space or a line break",
    ),
    "open webui secret key with a final line break": (
        {"open_webui_enabled": True, "open_webui_secret_key": "o" * 40 + "\n"},
        "open_webui_secret_key starts or ends with a space or a line break",
    ),
    # Numbers as strings that only look right: `| float` and `| int` would take them, vLLM and Docker get the text.
    "gpu memory with a trailing space": (
        {"vllm_server_gpu_memory_utilization": "0.85 "},
        'vllm_server_gpu_memory_utilization must be in (0, 1], written as a number (got "0.85 ")',
    ),
    # Refused by the wiring's argument spec, the first task of the preflight play, before `| int` could cut it down.
    "fractional port": (
        {"litellm_proxy_port": "12434.5"},
        'litellm_proxy_port must be 1-65535, written as a whole number (got "12434.5")',
    ),
    "port with a leading space": (
        {"litellm_proxy_port": " 12434"},
        'litellm_proxy_port must be 1-65535, written as a whole number (got " 12434")',
    ),
    "port as a float": (
        {"litellm_proxy_port": 12434.0},
        "litellm_proxy_port must be 1-65535, written as a whole number (got 12434.0)",
    ),
    "max model length as a float": (
        {"vllm_server_settings": {"max_model_len": 32768.0}},
        "max_model_len must be a positive whole number (got 32768.0)",
    ),
    "timeout with a final line break": (
        {"model_cache_timeout": "600\n"},
        "model_cache_timeout must be a whole number of 1 or more",
    ),
    "price as text with a space": (
        {"litellm_proxy_models": [{"model_name": "m", "api_base": "http://x/v1", "input_cost_per_million": "0.2 "}]},
        "prices per 1M tokens that are numbers of 0 or more",
    ),
    # A digest is sha256: and exactly 64 lower-case hex characters.
    "digest too short": (
        {"container_images_postgres": "postgres:17.6@sha256:" + "a" * 63},
        "is not allowed (container_images_postgres)",
    ),
    "digest in upper case": (
        {"container_images_vllm": "nvcr.io/nvidia/vllm:26.10-py3@sha256:" + "A" * 64},
        "is not allowed (container_images_vllm)",
    ),
    "image with a final line break": (
        {"container_images_litellm": "ghcr.io/berriai/litellm:v1.109.1\n"},
        "is not allowed (container_images_litellm)",
    ),
    # A hosts pattern that matches no unit ends green with only Ansible's warning unless refused.
    "hosts pattern matching no unit": ({"thorfleet_hosts": "thor-99"}, "thorfleet_hosts 'thor-99' matches no host"),
}


# Each case is one alias of thor-01 whose host variables are the case's: one site run refuses them all, each with its
# own message, against the real unit (its runtime is read, its cache source reached). A hosts pattern is no host
# variable: that case runs on its own, with -e.
ALIASES = {name: f"case-{number:02d}" for number, name in enumerate(CASES) if "thorfleet_hosts" not in CASES[name][0]}
FAILED = re.compile(r"^(?:fatal|failed): \[([^\]]+)\].*? => (\{.*\})$", re.M)


def unit_connection() -> dict:
    """thor-01's connection variables, as molecule's inventory gives them."""
    inventory = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory" / "ansible_inventory.yml"
    hosts = yaml.safe_load(inventory.read_text())["all"]["hosts"]
    return hosts["thor-01"]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> tuple[int, str, dict]:
    """(exit code, output, alias -> the messages of its failed results) of one site run over every alias."""
    inventory = tmp_path_factory.mktemp("preflight") / "cases.yml"
    # Shown: Ansible prints a censored result's error once per task, not once per host, so that the secrets' cases
    # could not be told apart. What is shown is the cases' own bad values; the scenario's secrets are still scanned for.
    connection = {**unit_connection(), "thorfleet_no_log": False}
    cases = {alias: {**connection, **CASES[name][0]} for name, alias in ALIASES.items()}
    inventory.write_text(json.dumps({"all": {"children": {"thor": {"children": {"cases": {"hosts": cases}}}}}}))
    # Eight forks: every alias shares thor-01's one SSH connection, which sshd opens ten sessions on at most.
    code, output = playbook("site", "-i", str(inventory), "-e", "thorfleet_hosts=cases", "--forks", "8")
    messages = {}
    for alias, result in FAILED.findall(output):
        parsed = json.loads(result)
        messages.setdefault(alias, []).append(" ".join([parsed.get("msg", ""), *parsed.get("argument_errors", [])]))
    return code, output, messages


@pytest.mark.parametrize("name", list(ALIASES))
def test_bad_input_is_refused_with_the_variable_named(refusals, name):
    code, output, messages = refusals
    assert code != 0
    assert any(CASES[name][1] in message for message in messages.get(ALIASES[name], [])), messages.get(ALIASES[name])
    assert re.search(rf"^{ALIASES[name]}\s+:.* changed=0 ", output, re.M), output[-2500:]


def test_a_hosts_pattern_matching_no_unit_is_refused():
    extra, message = CASES["hosts pattern matching no unit"]
    code, output = playbook("site", "-e", json.dumps(extra))
    assert code != 0
    assert message in output, output[-2500:]
    assert "changed=0" in output


def test_nothing_on_the_unit_was_touched(host, refusals):
    assert not host.file("/etc/docker/daemon.json").exists
    assert host.check_output("docker ps -aq") == ""
