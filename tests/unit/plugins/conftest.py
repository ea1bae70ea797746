"""The collection's modules run as Ansible runs them, against a fake proxy in place of `open_url`; the model cache's
trees, and a real rsync daemon on loopback serving them."""

import json
import os
import shutil
import socket
import subprocess
import time

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.testing import patch_module_args
from ansible_collections.thorfleet.llm.plugins.module_utils import _litellm as litellm_utils
from ansible_collections.thorfleet.llm.plugins.modules import litellm_key
from thorsim.hfcache import make_model

from .litellm_fake import API_URL, MASTER_KEY, FakeLiteLLM


@pytest.fixture
def sleeps(monkeypatch):
    """Backoff delays the client asked for, without waiting."""
    delays = []
    monkeypatch.setattr(litellm_utils, "_sleep", delays.append)
    return delays


@pytest.fixture
def fake(monkeypatch, sleeps):
    """A LiteLLM proxy in place of `open_url`."""
    proxy = FakeLiteLLM()
    monkeypatch.setattr(litellm_utils, "open_url", proxy)
    return proxy


@pytest.fixture
def run_module(fake, capsys, monkeypatch):
    """Run a module (litellm_key unless told) as Ansible would: module args in, JSON out, exit code, no_log."""
    # A module runs in a process of its own. Once another test imports Ansible's controller code into this
    # one, module_utils would hand warnings to the controller's display instead of the module's result.
    monkeypatch.setattr(module_utils_internal, "is_controller", False)

    def run(args, check=False, diff=False, module=litellm_key):
        module_args = {"api_url": API_URL, "master_key": MASTER_KEY, **args}
        module_args.update(_ansible_check_mode=check, _ansible_diff=diff)
        with patch_module_args(module_args), pytest.raises(SystemExit) as exited:
            module.main()
        out = capsys.readouterr().out
        result = json.loads(out)
        result["_raw"] = out
        assert bool(result.get("failed")) == (exited.value.code != 0), out
        return result

    return run


@pytest.fixture
def source_trees(tmp_path):
    """A cache source's trees by name: a Hugging Face hub cache of one model (links in snapshots/), a vLLM cache."""
    hub = tmp_path / "src" / "hf"
    make_model(hub / "hub", "openai/gpt-oss-120b", {"config.json": b"{}", "model.safetensors": os.urandom(300_000)})
    (tmp_path / "src" / "vc" / "torch_compile_cache").mkdir(parents=True)
    (tmp_path / "src" / "vc" / "torch_compile_cache" / "graph.py").write_text("# graph\n")
    return {"huggingface": str(hub), "vllm_cache": str(tmp_path / "src" / "vc")}


@pytest.fixture
def rsync_daemon(tmp_path, source_trees):
    """rsync --daemon on 127.0.0.1, serving the source trees read-only as the role configures it."""
    if not shutil.which("rsync"):
        pytest.skip("rsync is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    modules = "".join(f"[{name}]\npath = {path}\n" for name, path in source_trees.items())
    conf = tmp_path / "rsyncd.conf"
    conf.write_text(f"address = 127.0.0.1\nport = {port}\nuse chroot = no\nread only = yes\n{modules}")
    proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}"])
    for _poll in range(50):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield f"rsync://127.0.0.1:{port}"
    proc.terminate()
    proc.wait()


@pytest.fixture
def unit_trees(tmp_path):
    """A unit's trees, by the source's names; not made."""
    return {"huggingface": str(tmp_path / "unit" / "hf"), "vllm_cache": str(tmp_path / "unit" / "vc")}
