"""The Thor hardware stand-ins, run for real as the unit runs them."""

import importlib.machinery
import importlib.util
import json
import os
import subprocess

import pytest
from thorsim.images import IMAGES_DIR

ROOTFS = IMAGES_DIR / "unit" / "rootfs"


def run(tool, *args, env=None):
    return subprocess.run([str(ROOTFS / tool), *args], capture_output=True, text=True, env=env, check=False)


@pytest.fixture
def state_env(tmp_path):
    return {**os.environ, "THORSIM_STATE_DIR": str(tmp_path)}


def fake_docker(tmp_path, default_runtime):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    if default_runtime is None:
        docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    else:
        docker.write_text(f"#!/bin/sh\necho {default_runtime}\n")
    docker.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "THORSIM_NVIDIA_INJECTED"}
    return {**env, "PATH": f"{bin_dir}:{env['PATH']}"}


@pytest.mark.parametrize("runtime", ["runc", None])
def test_nvidia_smi_fails_like_nvml_unless_the_default_runtime_is_nvidia(tmp_path, runtime):
    result = run("usr/bin/nvidia-smi", env=fake_docker(tmp_path, runtime))
    assert result.returncode != 0
    assert result.stdout.strip() == "Failed to initialize NVML: Unknown Error"


def test_nvidia_smi_answers_with_the_nvidia_runtime(tmp_path):
    env = fake_docker(tmp_path, "nvidia")
    assert "NVIDIA Thor" in run("usr/bin/nvidia-smi", env=env).stdout
    assert run("usr/bin/nvidia-smi", "-L", env=env).stdout.startswith("GPU 0: NVIDIA Thor (UUID: ")
    # Unified memory: NVML has no framebuffer numbers on Thor.
    query = run("usr/bin/nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader", env=env)
    assert query.stdout.strip() == "NVIDIA Thor, [N/A]"


def test_nvidia_smi_fails_while_the_nvml_lost_knob_is_set(tmp_path):
    env = {**fake_docker(tmp_path, "nvidia"), "THORSIM_RUN_DIR": str(tmp_path)}
    assert run("usr/bin/nvidia-smi", "-L", env=env).returncode == 0
    (tmp_path / "nvml-lost").touch()
    result = run("usr/bin/nvidia-smi", "-L", env=env)
    assert result.returncode != 0
    assert result.stdout.strip() == "Failed to initialize NVML: Unknown Error"


def test_nvidia_smi_injected_into_a_container_needs_no_engine(tmp_path):
    env = {**fake_docker(tmp_path, None), "THORSIM_NVIDIA_INJECTED": "1"}
    assert run("usr/bin/nvidia-smi", "-L", env=env).returncode == 0


def test_nvpmodel_keeps_state_and_rejects_unknown_modes(state_env):
    assert run("usr/sbin/nvpmodel", "-q", env=state_env).stdout.splitlines() == ["NV Power Mode: 120W", "1"]
    assert run("usr/sbin/nvpmodel", "-m", "0", env=state_env).returncode == 0
    assert run("usr/sbin/nvpmodel", "-q", env=state_env).stdout.splitlines() == ["NV Power Mode: MAXN", "0"]
    bad = run("usr/sbin/nvpmodel", "-m", "7", env=state_env)
    assert bad.returncode == 1
    assert "Invalid power mode ID: '7'" in bad.stderr
    assert run("usr/sbin/nvpmodel", "-q", env=state_env).stdout.splitlines()[-1] == "0"
    assert run("usr/sbin/nvpmodel", env=state_env).returncode == 1


def test_jetson_clocks_show_store_restore(state_env):
    assert "MinFreq=0 " in run("usr/bin/jetson_clocks", "--show", env=state_env).stdout
    assert run("usr/bin/jetson_clocks", env=state_env).returncode == 0
    assert "MinFreq=1575000000" in run("usr/bin/jetson_clocks", "--show", env=state_env).stdout
    assert run("usr/bin/jetson_clocks", "--restore", env=state_env).returncode == 0
    assert "MinFreq=0 " in run("usr/bin/jetson_clocks", "--show", env=state_env).stdout
    assert run("usr/bin/jetson_clocks", "--bogus", env=state_env).returncode == 1


def test_tegra_release_is_jetpack_7_0():
    first = (ROOTFS / "etc" / "nv_tegra_release").read_text().splitlines()[0]
    assert first.startswith("# R38 (release), REVISION: 2.0,")


@pytest.fixture(scope="module")
def runtime():
    path = str(ROOTFS / "usr" / "bin" / "nvidia-container-runtime")
    loader = importlib.machinery.SourceFileLoader("nvidia_container_runtime", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("env", "injected"),
    [
        (["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=all"], True),
        (["NVIDIA_VISIBLE_DEVICES=0"], True),
        (["NVIDIA_VISIBLE_DEVICES=void"], False),
        (["NVIDIA_VISIBLE_DEVICES=none"], False),
        (["NVIDIA_VISIBLE_DEVICES="], False),
        (["PATH=/bin"], False),
    ],
)
def test_runtime_injects_nvidia_smi_only_for_gpu_containers(runtime, env, injected):
    spec = {"process": {"env": list(env)}, "mounts": []}
    assert runtime.inject(spec) is injected
    assert (runtime.MARK in spec["process"]["env"]) is injected
    assert [m["destination"] for m in spec["mounts"]] == (["/usr/bin/nvidia-smi"] if injected else [])
    # A second pass (a restarted container) adds nothing twice.
    runtime.inject(spec)
    assert len(spec["mounts"]) == int(injected)


@pytest.mark.parametrize(
    ("argv", "bundle"),
    [
        (["--root", "/r", "--log", "l", "create", "--bundle", "/b", "--pid-file", "p", "id"], "/b"),
        (["create", "-b", "/b2", "id"], "/b2"),
        (["create", "--bundle=/b3", "id"], "/b3"),
        (["--root", "/r", "start", "id"], None),
        (["create", "id"], "cwd"),
    ],
)
def test_runtime_finds_the_bundle_of_create_calls_only(runtime, argv, bundle, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert runtime.bundle_of(argv) == (str(tmp_path) if bundle == "cwd" else bundle)


def test_runtime_rewrites_the_bundle_then_hands_over_to_runc(runtime, tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=all"]}}))
    calls = []
    monkeypatch.setattr(runtime.os, "execv", lambda path, argv: calls.append((path, argv)))
    runtime.main(["create", "--bundle", str(tmp_path), "c1"])
    spec = json.loads((tmp_path / "config.json").read_text())
    assert spec["mounts"][0]["source"] == "/usr/bin/nvidia-smi"
    assert calls == [("/usr/sbin/runc", ["/usr/sbin/runc", "create", "--bundle", str(tmp_path), "c1"])]
