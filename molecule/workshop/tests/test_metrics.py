"""vLLM's metrics on two simulated units: only through the token-guarded proxy, scraped by a real Prometheus."""

from __future__ import annotations

import csv
import http.client
import json
import os
import threading
import time
import urllib.parse
from pathlib import Path

import docker
import pytest
import testinfra
import yaml
from scenario import PROJECT, fleet_address, playbook, unit_containers

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = EPHEMERAL / "inventory"
PROMETHEUS_DIR = INVENTORY.with_name("inventory.artifacts") / "prometheus"
SECRETS = yaml.safe_load((PROJECT / "inventories/sim/group_vars/thor/generated.yml").read_text())
TOKEN = SECRETS["metrics_proxy_token"]
UNITS = ("thor-01", "thor-02")
MODEL = "Qwen3-VL-30B-A3B"
PROMETHEUS_IMAGE = "thorfleet-sim/prometheus:0.1.0"


@pytest.fixture(scope="module")
def containers():
    return unit_containers(UNITS)


@pytest.fixture(scope="module")
def addresses(containers):
    return {unit: fleet_address(container) for unit, container in containers.items()}


def get(address: str, port: int, path: str, token: str | None = None, method: str = "GET") -> tuple[int, str]:
    conn = http.client.HTTPConnection(address, port, timeout=30)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_vllms_metrics_come_only_through_the_proxy_with_the_token(containers, addresses):
    for unit, address in addresses.items():
        status, body = get(address, 9400, "/metrics", TOKEN)
        assert status == 200 and "vllm:num_requests_running" in body and "vllm:kv_cache_usage_perc" in body, unit
        assert get(address, 9400, "/metrics")[0] == 401
        assert get(address, 9400, "/metrics", TOKEN[:-1] + "x")[0] == 401
        assert get(address, 9400, "/v1/models", TOKEN)[0] == 404
        assert get(address, 9400, "/metrics", TOKEN, method="POST")[0] == 403
        # vLLM's port is published nowhere: not by Docker on the unit, not on the unit's address.
        unit_host = testinfra.get_host(f"ansible://{unit}", ansible_inventory=str(INVENTORY))
        assert unit_host.check_output("docker port ai-vllm") == ""
        with pytest.raises(OSError):
            get(address, 8000, "/metrics")
        # The token is in a root-only file on the unit.
        config = unit_host.file("/etc/thorfleet/metrics/metrics.conf")
        assert (config.user, config.mode) == ("root", 0o600)


@pytest.fixture(scope="module")
def targets():
    code, output = playbook("prometheus", "-e", "metrics_proxy_enabled=true", "-e", "prometheus_scrape_interval=2s")
    assert code == 0, output
    assert TOKEN not in output
    return output


def test_the_targets_file_lists_every_unit_with_its_model(targets, containers):
    written = json.loads((PROMETHEUS_DIR / "targets.json").read_text())
    # Each unit as Ansible reaches it (ansible_host): its address on the fleet's network.
    assert written == [
        {"targets": [f"{fleet_address(containers[u])}:9400"], "labels": {"unit": u, "model": MODEL}} for u in UNITS
    ]
    token_file = PROMETHEUS_DIR / "metrics-token"
    assert token_file.read_text() == TOKEN and oct(token_file.stat().st_mode & 0o777) == "0o600"
    (scrape,) = yaml.safe_load((PROMETHEUS_DIR / "scrape-config.yml").read_text())
    assert scrape["authorization"] == {"type": "Bearer", "credentials_file": str(token_file)}
    assert scrape["file_sd_configs"] == [{"files": [str(PROMETHEUS_DIR / "targets.json")]}]


@pytest.fixture(scope="module")
def prometheus(targets, containers):
    """A real Prometheus on the fleet's network, configured with the files prometheus.yml wrote."""
    client = docker.from_env()
    unit = containers["thor-01"]
    network = next(iter(unit.attrs["NetworkSettings"]["Networks"]))
    config = PROMETHEUS_DIR.with_name("prometheus-test.yml")
    scrape = yaml.safe_load((PROMETHEUS_DIR / "scrape-config.yml").read_text())
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "2s"}, "scrape_configs": scrape}))
    container = client.containers.run(
        PROMETHEUS_IMAGE,
        name=f"{unit.name}-prometheus",
        detach=True,
        network=network,
        # The same paths inside as on the controller, so the written configuration is used as it is.
        volumes={
            str(PROMETHEUS_DIR): {"bind": str(PROMETHEUS_DIR), "mode": "ro"},
            str(config): {"bind": "/etc/prometheus/prometheus.yml", "mode": "ro"},
        },
        # The simulator's labels: `sim/fleet down` and `prune` remove it if this test is cut short.
        labels={k: v for k, v in unit.labels.items() if k.startswith("org.thorfleet.sim")},
    )
    try:
        container.reload()
        yield container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    finally:
        container.remove(force=True)


def prometheus_api(address: str, path: str, **query) -> dict:
    status, body = get(address, 9090, f"/api/v1/{path}?{urllib.parse.urlencode(query)}")
    assert status == 200, body
    return json.loads(body)["data"]


def test_a_real_prometheus_scrapes_every_unit_through_the_proxy(prometheus):
    deadline = time.monotonic() + 90
    while True:
        try:
            active = prometheus_api(prometheus, "targets")["activeTargets"]
        except OSError:
            active = []  # still starting
        if len(active) == len(UNITS) and all(t["health"] == "up" for t in active):
            break
        assert time.monotonic() < deadline, active
        time.sleep(2)
    assert sorted(t["labels"]["unit"] for t in active) == list(UNITS)
    result = prometheus_api(prometheus, "query", query="vllm:num_requests_running")["result"]
    assert sorted(r["metric"]["unit"] for r in result) == list(UNITS)
    assert all(r["metric"]["model"] == MODEL and r["metric"]["model_name"] == MODEL for r in result)


def test_the_status_table_shows_vllms_load(addresses, tmp_path):
    # A long answer streaming on thor-01 while status.yml asks: one request running there.
    stop = threading.Event()

    def stream():
        conn = http.client.HTTPConnection(addresses["thor-01"], 12434, timeout=120)
        body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "max_tokens": 20000, "stream": True}
        conn.request(
            "POST",
            "/v1/chat/completions",
            json.dumps(body),
            {"Content-Type": "application/json", "Authorization": f"Bearer {SECRETS['litellm_proxy_master_key']}"},
        )
        response = conn.getresponse()
        while not stop.is_set() and response.readline():
            pass
        conn.close()

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    try:
        time.sleep(1)
        code, output = playbook("status", "-e", f"status_dir={tmp_path}")
    finally:
        stop.set()
        thread.join(30)
    assert code == 0, output
    rows = {row["unit"]: row for row in csv.DictReader((tmp_path / "status.csv").open())}
    assert int(rows["thor-01"]["running"]) >= 1 and rows["thor-01"]["KV cache"] != "0.0%", rows["thor-01"]
    assert (rows["thor-02"]["running"], rows["thor-02"]["waiting"], rows["thor-02"]["KV cache"]) == ("0", "0", "0.0%")
    assert (
        "| unit | default runtime | NVML | power mode | cache manifest | vLLM serves | running | waiting | KV cache |"
        in (tmp_path / "status.md").read_text()
    )
