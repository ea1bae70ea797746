"""The collection's modules run as Ansible runs them, against a fake proxy in place of `open_url`."""

import json

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.testing import patch_module_args
from ansible_collections.thorfleet.llm.plugins.module_utils import _litellm as litellm_utils
from ansible_collections.thorfleet.llm.plugins.modules import litellm_key

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
