"""jetson_info: the L4T release, the engine's answer, daemon.json, NVML and the power mode read in one call; what must
answer fails."""

from __future__ import annotations

import json
import platform

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.testing import patch_module_args
from ansible_collections.thorfleet.llm.plugins.module_utils._docker_engine import DockerError
from ansible_collections.thorfleet.llm.plugins.module_utils._jetson_info import read
from ansible_collections.thorfleet.llm.plugins.modules import jetson_info

from ..docs import assert_documented


class Engine:
    def __init__(self, info=None):
        self.info = info

    def request(self, method, path, body=None):
        assert (method, path) == ("GET", "/info")
        if self.info is None:
            raise DockerError("cannot talk to the Docker engine at /var/run/docker.sock: refused")
        return 200, self.info


def commands(**answers):
    """run() answering each program by name; a program not given is missing."""
    return lambda argv: answers.get(argv[0], (None, "", ""))


def test_a_healthy_unit(tmp_path):
    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"default-runtime": "nvidia"}\n')
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R38 (release), REVISION: 2.0\n")
    run = commands(**{"nvidia-smi": (0, "GPU 0: Thor\n", ""), "nvpmodel": (0, "NV Power Mode: MAXN\n0\n", "")})
    unit = read(Engine({"DefaultRuntime": "nvidia"}), run, str(daemon), str(release), power_mode=True)
    assert unit == dict(
        can_talk_to_docker=True,
        default_runtime="nvidia",
        msg="",
        daemon={"default-runtime": "nvidia"},
        daemon_error="",
        release="# R38 (release), REVISION: 2.0\n",
        architecture=platform.machine(),
        nvml=dict(rc=0, stdout="GPU 0: Thor\n", stderr=""),
        nvpmodel="NV Power Mode: MAXN\n0\n",
        clocks=None,
    )


def test_a_stopped_engine_missing_file_and_missing_nvidia_smi_are_reported(tmp_path):
    unit = read(Engine(), commands(), str(tmp_path / "none.json"), str(tmp_path / "none"))
    assert (unit["can_talk_to_docker"], unit["default_runtime"]) == (False, "")
    assert (unit["daemon"], unit["release"]) == ({}, None)
    assert "cannot talk" in unit["msg"]
    assert unit["nvml"] == dict(rc=127, stdout="", stderr="nvidia-smi not found")


@pytest.mark.parametrize(
    ("text", "daemon", "error"),
    [
        ("  \n", {}, ""),
        ('{"default-runtime": "runc",}', None, "not valid JSON"),
        ('["nvidia"]', None, "not a JSON object"),
    ],
)
def test_daemon_json_blank_or_broken(tmp_path, text, daemon, error):
    (tmp_path / "d.json").write_text(text)
    unit = read(Engine({}), commands(), str(tmp_path / "d.json"), str(tmp_path / "r"), nvml=False)
    assert unit["daemon"] == daemon and unit["daemon_error"].startswith(error)


def test_nvml_is_not_asked_without_nvml(tmp_path):
    assert read(Engine({}), commands(), str(tmp_path / "d.json"), str(tmp_path / "r"), nvml=False)["nvml"] is None


@pytest.mark.parametrize(
    ("flags", "run", "message"),
    [
        (
            dict(power_mode=True),
            commands(nvpmodel=(1, "", "no such mode\n")),
            "nvpmodel -q failed (rc 1): no such mode",
        ),
        (dict(jetson_clocks=True), commands(), "jetson_clocks --show failed (rc 127): jetson_clocks not found"),
    ],
)
def test_what_must_answer_fails(tmp_path, flags, run, message):
    with pytest.raises(RuntimeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read(Engine({}), run, str(tmp_path / "d.json"), str(tmp_path / "r"), nvml=False, **flags)


def test_the_module_reports_and_fails(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(module_utils_internal, "is_controller", False)
    monkeypatch.setenv("PATH", str(tmp_path))

    def run(**args):
        with patch_module_args({**args, "_ansible_check_mode": True}), pytest.raises(SystemExit) as exited:
            jetson_info.main()
        result = json.loads(capsys.readouterr().out)
        assert bool(result.get("failed")) == (exited.value.code != 0), result
        return result

    socket = str(tmp_path / "docker.sock")
    result = run(daemon_json=str(tmp_path / "d.json"), docker_socket=socket)
    assert (result["changed"], result["can_talk_to_docker"], result["nvml"]["rc"]) == (False, False, 127)
    failed = run(daemon_json=str(tmp_path / "d.json"), docker_socket=socket, power_mode=True)
    assert failed["failed"] and "nvpmodel -q failed" in failed["msg"]


def test_documented_as_specified():
    assert_documented(jetson_info.DOCUMENTATION, jetson_info.argument_spec())
