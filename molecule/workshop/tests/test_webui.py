"""Open WebUI on a simulated unit, used as a person would: its real HTTP API, then a real browser."""

import hashlib
import importlib.util
import io
import json
import os
import sys
import tarfile
from pathlib import Path
from urllib.parse import urlencode

import docker
import pytest
import yaml
from scenario import PROJECT, http, playbook, unit_containers

INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
SECRETS = yaml.safe_load((PROJECT / "inventories/sim/group_vars/thor/generated.yml").read_text())
WEBUI = "http://127.0.0.1:8080"
LITELLM = "http://127.0.0.1:12434"
MODEL = "Qwen3-VL-30B-A3B"
ADMIN = {"name": "Ada Attendee", "email": "ada@example.org", "password": "Thor-fleet-2026!"}
ENABLED = json.dumps({"open_webui_enabled": True})
BROWSER = "thorfleet-sim/browser:0.1.0"
ARTEFACTS = PROJECT / "tests" / "artefacts" / os.environ.get("MOLECULE_SCENARIO_NAME", "workshop")


def vllm_sim_answer(prompt: str, tokens: int) -> str:
    """What vllm-sim answers to `prompt`, by its own code."""
    spec = importlib.util.spec_from_file_location("vllm_sim", PROJECT / "sim/images/vllm-sim/vllm_sim.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return "".join(module.answer(prompt, tokens))


@pytest.fixture(scope="module")
def webui_key():
    store = INVENTORY.with_name("inventory.artifacts") / "keys" / "raw-keys.yml"  # keys.yml's, beside the inventory
    return yaml.safe_load(store.read_text())["open-webui@thor-01"]


@pytest.fixture(scope="module")
def first_signup(host):
    return http(host, "POST", f"{WEBUI}/api/v1/auths/signup", ADMIN)


@pytest.fixture(scope="module")
def token(host, first_signup):
    status, body = http(
        host, "POST", f"{WEBUI}/api/v1/auths/signin", {"email": ADMIN["email"], "password": ADMIN["password"]}
    )
    assert status == 200, body
    return body["token"]


def test_open_webui_litellm_and_the_metrics_proxy_are_the_published_ports(host):
    lines = host.check_output("docker ps --format '{{.Names}} {{.Ports}}'").splitlines()
    ports = {name: p for name, _, p in (line.partition(" ") for line in lines)}
    assert "0.0.0.0:8080->8080/tcp" in ports["ai-open-webui"]
    published = {name for name, p in ports.items() if "->" in p}
    # vLLM's port is not among them: the metrics proxy (hosts.yml) serves its /metrics alone.
    assert published == {"ai-open-webui", "ai-litellm", "ai-metrics"}


def test_its_data_is_in_the_host_folder(host):
    data = host.file("/var/lib/thorfleet/open-webui")
    assert data.is_directory and data.mode == 0o700
    assert host.file("/var/lib/thorfleet/open-webui/webui.db").is_file


def test_the_first_account_becomes_the_admin(first_signup):
    status, body = first_signup
    assert status == 200, body
    assert body["role"] == "admin" and body["email"] == ADMIN["email"] and body["token"]


def test_sign_up_is_closed_after_the_first_account(host, first_signup):
    status, body = http(
        host, "POST", f"{WEBUI}/api/v1/auths/signup", {"name": "Eve", "email": "eve@example.org", "password": "x" * 16}
    )
    assert status == 403, body


def test_the_admin_signs_in(host, token):
    status, body = http(host, "GET", f"{WEBUI}/api/v1/auths/", key=token)
    assert status == 200 and body["role"] == "admin" and body["email"] == ADMIN["email"]


def test_the_model_is_the_one_litellm_serves(host, token):
    status, body = http(host, "GET", f"{WEBUI}/api/models", key=token)
    assert status == 200, body
    assert MODEL in [model["id"] for model in body["data"]]


def test_a_chat_answer_comes_from_vllm_sim_through_litellm_under_open_webuis_key(host, token, webui_key):
    prompt = "Hello Thor, this is Open WebUI"
    status, body = http(
        host,
        "POST",
        f"{WEBUI}/api/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": False, "max_tokens": 7},
        key=token,
    )
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == vllm_sim_answer(prompt, 7)
    # LiteLLM logged this very request (its id) under Open WebUI's key, with the tokens it used.
    query = urlencode({"request_id": body["id"]})
    status, rows = http(host, "GET", f"{LITELLM}/spend/logs?{query}", key=SECRETS["litellm_proxy_master_key"])
    assert status == 200 and len(rows) == 1, rows
    assert rows[0]["api_key"] == hashlib.sha256(webui_key.encode()).hexdigest()
    assert rows[0]["completion_tokens"] == 7 and rows[0]["spend"] > 0


def test_open_webuis_key_has_its_alias_in_litellm(host, webui_key):
    status, body = http(host, "GET", f"{LITELLM}/key/info", key=webui_key)
    assert status == 200, body
    assert body["info"]["key_alias"] == "open-webui"
    assert body["info"]["metadata"]["service"] == "open-webui"


def test_check_mode_reports_no_change():
    rc, output = playbook("site", "--check", "--diff", "-e", ENABLED)
    assert rc == 0, output[-3000:]
    assert "changed=0" in output.split("PLAY RECAP")[-1], output[-3000:]


def test_an_exclusive_roster_run_keeps_open_webuis_key(host, tmp_path, token, webui_key):
    roster = tmp_path / "roster.csv"
    roster.write_text("alias,unit\nada,thor-01\n")
    rc, output = playbook("keys", "-e", f"keys_roster={roster}", "-e", "keys_exclusive=true", "-e", ENABLED)
    assert rc == 0, output[-3000:]
    assert webui_key not in output
    status, body = http(host, "GET", f"{LITELLM}/v1/models", key=webui_key)
    assert status == 200, body


def test_a_screenshot_of_the_chat_page(host, token):
    """Debian's Chromium on the fleet's network, signed in with the admin's token, waits for the model."""
    # What the admin's "Okay, Let's Go!" stores on a first visit: this release's notes were seen.
    status, config = http(host, "GET", f"{WEBUI}/api/config")
    assert status == 200 and config["version"], config
    seen = {"ui": {"version": config["version"]}}
    assert http(host, "POST", f"{WEBUI}/api/v1/users/user/settings/update", seen, key=token)[0] == 200
    client = docker.from_env()
    name = host.ansible.get_variables()["inventory_hostname"]
    unit = unit_containers([name])[name]
    network = next(iter(unit.attrs["NetworkSettings"]["Networks"]))
    address = unit.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    browser = client.containers.run(
        BROWSER,
        [f"http://{address}:8080/", "/home/browser/chat.png", "--local-storage", f"token={token}", "--wait-for", MODEL],
        network=network,
        labels={"org.thorfleet.sim": "1"},
        detach=True,
    )
    try:
        result = browser.wait(timeout=180)
        logs = browser.logs().decode(errors="replace")
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        chunks, _ = browser.get_archive("/home/browser/chat.png")
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
            png = archive.extractfile("chat.png").read()
        (ARTEFACTS / "chat.png").write_bytes(png)
    finally:
        browser.remove(force=True)
    assert result["StatusCode"] == 0, logs[-2000:]
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_a_removed_network_is_healed_for_open_webui(host, token):
    """Removed by hand with every container on it: site.yml puts Open WebUI back on the network as it is now."""
    listing = "docker network inspect infra-thor --format '{{range .Containers}}{{.Name}} {{end}}'"
    containers = host.check_output(listing).split()
    assert "ai-open-webui" in containers
    for name in containers:
        host.check_output(f"docker network disconnect -f infra-thor {name}")
    host.check_output("docker network rm infra-thor")

    rc, output = playbook("site", "-e", ENABLED)
    assert rc == 0, output[-3000:]

    network = host.check_output("docker network inspect infra-thor --format '{{.Id}}'")
    networks = "docker inspect ai-open-webui --format '{{json .NetworkSettings.Networks}}'"
    attached = json.loads(host.check_output(networks))
    assert list(attached) == ["infra-thor"] and attached["infra-thor"]["NetworkID"] == network
    # Signed in as before (its data is in the host folder), and answered with the model through LiteLLM.
    status, models = http(host, "GET", f"{WEBUI}/api/models", key=token)
    assert status == 200 and MODEL in [m["id"] for m in models["data"]], models
