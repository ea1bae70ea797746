"""Verify the whole stack on one simulated unit (testinfra, through molecule's inventory)."""

import json
import re
import shlex

import yaml
from scenario import PROJECT, http, playbook

SECRETS = yaml.safe_load((PROJECT / "inventories/sim/group_vars/thor/generated.yml").read_text())
MODEL = "Qwen3-VL-30B-A3B"
PORT = 12434


def test_docker_runs_nvidia_by_default_and_nvml_answers(host):
    assert host.check_output("docker info --format '{{.DefaultRuntime}}'") == "nvidia"
    assert host.run("nvidia-smi -L").rc == 0


def test_power_mode_is_maxn(host):
    assert host.check_output("nvpmodel -q").splitlines() == ["NV Power Mode: MAXN", "0"]


def test_only_litellm_publishes_a_port(host):
    ports = dict(
        line.split(" ", 1) if " " in line else (line, "")
        for line in host.check_output("docker ps --format '{{.Names}} {{.Ports}}'").splitlines()
    )
    assert set(ports) == {"ai-postgres", "ai-vllm", "ai-litellm"}
    published = {name: p for name, p in ports.items() if "->" in p}
    assert list(published) == ["ai-litellm"]
    assert f"0.0.0.0:{PORT}->{PORT}/tcp" in published["ai-litellm"]


def test_vllm_and_postgres_are_unreachable_from_outside_the_unit(host):
    address = host.check_output("hostname -I").split()[0]
    script = f"""
import socket
for port in (8000, 5432, {PORT}):
    s = socket.socket()
    s.settimeout(3)
    print(port, s.connect_ex(({address!r}, port)) == 0)
"""
    reachable = dict(line.split() for line in host.check_output(f"python3 -c {shlex.quote(script)}").splitlines())
    assert reachable == {"8000": "False", "5432": "False", str(PORT): "True"}


def test_readiness_says_the_database_is_connected(host):
    status, body = http(host, "GET", f"http://127.0.0.1:{PORT}/health/readiness")
    assert status == 200
    assert body["db"] == "connected"


def test_chat_completion_through_litellm(host):
    status, body = http(
        host,
        "POST",
        f"http://127.0.0.1:{PORT}/v1/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": "Hello Thor"}], "max_tokens": 8},
        key=SECRETS["litellm_proxy_master_key"],
    )
    assert status == 200, body
    assert body["choices"][0]["message"]["content"].strip()
    assert body["usage"]["completion_tokens"] > 0
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_requests_without_the_key_are_refused(host):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    assert http(host, "POST", f"http://127.0.0.1:{PORT}/v1/chat/completions", body)[0] == 401
    assert http(host, "POST", f"http://127.0.0.1:{PORT}/v1/chat/completions", body, key="sk-" + "x" * 40)[0] == 401


def test_config_is_private_and_names_secrets_only_by_reference(host):
    config = host.file("/etc/thorfleet/litellm/config.yaml")
    assert config.mode == 0o600
    assert config.user == "root"
    text = config.content_string
    assert "os.environ/LITELLM_MASTER_KEY" in text
    for secret in SECRETS.values():
        assert secret not in text


def container_ids(host):
    return dict(line.split() for line in host.check_output("docker ps --format '{{.Names}} {{.ID}}'").splitlines())


def test_a_command_line_vllm_refuses_fails_the_unit_before_its_vllm_is_touched(host):
    """The seed guide's "Fast Startup Mode" flag, which vLLM 0.31.0 refuses: asked of the image first, in check mode
    too; the unit fails with vLLM's own words and keeps serving on the containers it had."""
    before = container_ids(host)
    refused = json.dumps({"vllm_server_settings": {"compilation_config": {"level": 0}}})
    for mode in (["--check"], []):
        rc, output = playbook("site", *mode, "-e", refused)
        assert rc != 0, output[-3000:]
        assert "refuses the command line for profile qwen3-vl-30b-a3b-awq on thor-01" in output, output[-3000:]
        assert "the running vLLM was not touched. vLLM says:" in output
        assert "validation error for CompilationConfig\nlevel\n  Unexpected keyword argument" in output
        assert "vllm_server : Run vLLM]" not in output
        assert container_ids(host) == before
    assert host.run("docker ps -a --format '{{.Names}}' | grep -c check").stdout.strip() == "0"
    test_chat_completion_through_litellm(host)


def test_a_model_whose_backend_does_not_answer_fails_the_unit_before_litellm_is_touched(host):
    before = container_ids(host)
    config = host.file("/etc/thorfleet/litellm/config.yaml").content_string
    wrong = json.dumps({"litellm_proxy_models": [{"model_name": MODEL, "api_base": "http://ai-vllm:8001/v1"}]})
    rc, output = playbook("site", "-e", wrong)
    assert rc != 0
    assert "LiteLLM's new config on thor-01 would not serve, so the running LiteLLM was not touched" in output
    assert f"model {MODEL}: its backend http://ai-vllm:8001/v1 does not answer" in output, output[-3000:]
    assert container_ids(host) == before
    assert host.file("/etc/thorfleet/litellm/config.yaml").content_string == config
    assert host.run("docker ps -a --format '{{.Names}}' | grep -c check").stdout.strip() == "0"
    test_chat_completion_through_litellm(host)


def test_a_port_another_container_or_process_holds_is_named_before_litellm_is_touched(host):
    image = host.check_output("docker inspect -f '{{.Config.Image}}' ai-litellm")
    host.check_output(f"docker run -d --name squatter -p 12500:4000 --entrypoint sleep {shlex.quote(image)} infinity")
    host.check_output("systemd-run --unit squatter-process python3 -m http.server --bind 0.0.0.0 12501")
    try:
        before = container_ids(host)
        for mode in (["--check"], []):
            rc, output = playbook("site", *mode, "-e", "litellm_proxy_port=12500")
            assert rc != 0
            assert (
                "Port 12500 on thor-01 is held already by the container squatter (0.0.0.0:12500), so ai-litellm cannot"
                " publish it as litellm_proxy_port asks; ai-litellm was left as it is. Stop or remove squatter"
            ) in output, output[-3000:]
            assert "litellm_proxy : Run LiteLLM]" not in output
        rc, output = playbook("site", "-e", "litellm_proxy_port=12501")
        assert rc != 0
        assert "Port 12501 on thor-01 is held already by a process that is not a container (0.0.0.0:12501)" in output
        assert container_ids(host) == before
    finally:
        host.run("docker rm -f squatter; systemctl stop squatter-process")
    test_chat_completion_through_litellm(host)


def test_a_vllm_that_fails_its_gate_is_put_back_as_it_served(host):
    """An image that starts but cannot serve (vllm-sim with a broken GPU): the vLLM that served was kept, stopped, and
    comes back itself, with its id, on its own settings; the unit serves again, and the recap says what was refused.
    Check mode reports the change and makes none."""
    before = container_ids(host)
    broken = ("-e", "container_images_vllm=thorfleet-sim/vllm-sim:0.1.1-broken")
    rc, output = playbook("site", "--check", *broken)
    assert rc == 0, output[-3000:]
    assert re.search(r"vllm_server : Run vLLM\] \**\nchanged: \[thor-01\]", output), output[-3000:]
    assert re.search(r'"thor-01\s+would serve\s', output), output[-3000:]
    assert container_ids(host) == before
    rc, output = playbook("site", *broken)
    assert rc != 0
    assert re.search(r'"thor-01\s+rolled back\s', output), output[-3000:]
    assert "The run stopped on 1 unit(s)" in output
    assert "thor-01 (rolled back): Require a one-token completion: vLLM on thor-01 answered" in output
    assert container_ids(host) == before
    assert "previous" not in host.check_output("docker ps -a --format '{{.Names}}'")
    test_chat_completion_through_litellm(host)


def test_a_changed_litellm_setting_recreates_litellm_alone(host):
    before = container_ids(host)
    rc, output = playbook("site", "-e", "litellm_proxy_request_timeout=300")
    assert rc == 0, output[-3000:]
    after = container_ids(host)
    assert after["ai-litellm"] != before["ai-litellm"]
    assert {k: after[k] for k in ("ai-vllm", "ai-postgres")} == {k: before[k] for k in ("ai-vllm", "ai-postgres")}
    assert "request_timeout: 300" in host.file("/etc/thorfleet/litellm/config.yaml").content_string
    rc, output = playbook("site")
    assert rc == 0, output[-3000:]
    assert "request_timeout: 600" in host.file("/etc/thorfleet/litellm/config.yaml").content_string


def test_postgres_trusts_its_own_loopback_as_the_official_image_does(host):
    """The simulator's authentication is the official image's: any password logs in over 127.0.0.1 inside the
    container, none from the unit's network. A credentials check made over 127.0.0.1 would prove nothing."""
    login = "docker exec -e PGPASSWORD={password} ai-postgres psql -h {address} -U litellm -d litellmdb -tAc 'select 1'"
    assert host.run(login.format(password="n" * 24, address="127.0.0.1")).stdout.strip() == "1"
    refused = host.run(login.format(password="n" * 24, address="ai-postgres"))
    assert refused.rc != 0 and "password authentication failed" in refused.stderr
    good = host.run(login.format(password=shlex.quote(SECRETS["postgres_password"]), address="ai-postgres"))
    assert good.stdout.strip() == "1", good.stderr


def test_a_volume_with_other_credentials_is_refused(host):
    before = container_ids(host)
    rc, output = playbook("site", "--check", "--diff", "-e", "postgres_password=" + "n" * 24)
    assert rc != 0
    assert "--check: a run would stop here. The PostgreSQL volume" in output
    assert "litellm_proxy : Run LiteLLM]" not in output  # not "LiteLLM would be recreated": the unit stops before
    rc, output = playbook("site", "-e", "postgres_password=" + "n" * 24)
    assert rc != 0
    assert "was initialised with other credentials" in output
    assert "n" * 24 not in output
    assert container_ids(host) == before


def test_backup_writes_a_timestamped_dump(host):
    rc, output = playbook("backup")
    assert rc == 0, output[-3000:]
    dumps = host.check_output("ls /var/lib/thorfleet/backups").split()
    assert dumps and all(d.startswith("litellmdb-") and d.endswith(".dump") for d in dumps)
    assert host.file(f"/var/lib/thorfleet/backups/{dumps[-1]}").size > 0


def test_secrets_never_reach_ansible_output():
    """Run site.yml again, verbose and with --diff: nothing changes and no secret is printed."""
    rc, output = playbook("site", "--diff", "-v")
    assert rc == 0, output[-3000:]
    assert "changed=0" in output and "failed=0" in output
    for name in ("postgres_password", "litellm_proxy_master_key", "litellm_proxy_salt_key"):
        assert SECRETS[name] not in output, f"{name} appears in the output"
