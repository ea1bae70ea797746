"""Verify the smoke scenario on every simulated unit (testinfra, through molecule's inventory)."""

import json

PROBE = "thorfleet-sim/probe:0.1.0"
NVML_ERROR = "Failed to initialize NVML: Unknown Error"


def test_systemd_is_running(host):
    assert host.run("systemctl is-system-running").stdout.strip() == "running"


def test_inner_engine_runs_on_overlay2(host):
    assert host.service("docker").is_running
    info = host.check_output("docker info --format '{{json .}}'")
    assert json.loads(info)["Driver"] == "overlay2"


def test_archived_image_runs_a_container(host):
    page = host.check_output("docker exec thorfleet-probe wget -qO- http://127.0.0.1:8080/")
    assert page.strip() == "thorfleet probe"


def test_thor_identity(host):
    release = host.file("/etc/nv_tegra_release")
    assert release.content_string.startswith("# R38 (release), REVISION: 2.0")


def test_nvpmodel_keeps_its_mode(host):
    before = host.check_output("nvpmodel -q").splitlines()[-1]
    try:
        host.check_output("nvpmodel -m 0")
        assert host.check_output("nvpmodel -q").splitlines() == ["NV Power Mode: MAXN", "0"]
        bad = host.run("nvpmodel -m 9")
        assert bad.rc != 0
        assert "Invalid power mode" in bad.stderr
        assert host.check_output("nvpmodel -q").splitlines()[-1] == "0"
    finally:
        host.check_output(f"nvpmodel -m {before}")


def nvidia_smi_failure(host) -> str:
    """What nvidia-smi prints when it fails ('' if it works). Its status then is 255, as the real one's on an
    NVML error, which SSH reserves for its own failures: the status is printed instead of returned."""
    result = host.check_output("nvidia-smi || echo failed: $?")
    return result if "failed: " in result else ""


def test_nvidia_smi_follows_the_default_runtime(host):
    daemon_json = "/etc/docker/daemon.json"
    saved = "/root/daemon.json.smoke-saved"
    before = nvidia_smi_failure(host)
    assert NVML_ERROR in before, before
    config = {"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}
    host.check_output(f"rm -f {saved}; test ! -e {daemon_json} || cp -p {daemon_json} {saved}")
    try:
        host.check_output(f"echo '{json.dumps(config)}' > {daemon_json} && systemctl restart docker")
        assert host.check_output("docker info --format '{{.DefaultRuntime}}'") == "nvidia"
        assert "NVIDIA Thor" in host.check_output("nvidia-smi")
        # The runtime gives the GPU's tools to containers that ask for the GPU, and only to them.
        inside = host.run(f"docker run --rm -e NVIDIA_VISIBLE_DEVICES=all {PROBE} nvidia-smi -L")
        assert inside.rc == 0, inside.stderr
        assert inside.stdout.startswith("GPU 0: NVIDIA Thor")
        assert host.run(f"docker run --rm {PROBE} nvidia-smi -L").rc != 0
    finally:
        host.check_output(f"if [ -e {saved} ]; then mv {saved} {daemon_json}; else rm -f {daemon_json}; fi")
        host.check_output("systemctl restart docker")
    assert NVML_ERROR in nvidia_smi_failure(host)
