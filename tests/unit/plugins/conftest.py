"""The collection's Python plugins, imported as Ansible does: `ansible_collections.thorfleet.llm...`.

`make collection` links this checkout in as .collections/ansible_collections/thorfleet/llm. When the link is
missing (a bare `pytest tests/unit`), a temporary one is made, so the tests never depend on a make target.
"""

import atexit
import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.testing import patch_module_args

REPO = Path(__file__).resolve().parents[3]


def _collections_root() -> Path:
    linked = REPO / ".collections"
    if (linked / "ansible_collections" / "thorfleet" / "llm").resolve() == REPO:
        return linked
    root = Path(tempfile.mkdtemp(prefix="thorfleet-collections-"))
    atexit.register(shutil.rmtree, root, True)
    (root / "ansible_collections" / "thorfleet").mkdir(parents=True)
    (root / "ansible_collections" / "thorfleet" / "llm").symlink_to(REPO, target_is_directory=True)
    return root


sys.path.insert(0, str(_collections_root()))

from ansible_collections.thorfleet.llm.plugins.module_utils import litellm as litellm_utils  # noqa: E402
from ansible_collections.thorfleet.llm.plugins.modules import litellm_key  # noqa: E402

from .litellm_fake import API_URL, MASTER_KEY, FakeLiteLLM  # noqa: E402


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
    """Run litellm_key as Ansible would (module args in, JSON out, exit code), no_log masking included."""
    # A module runs in a process of its own. Once another test imports Ansible's controller code into this
    # one, module_utils would hand warnings to the controller's display instead of the module's result.
    monkeypatch.setattr(module_utils_internal, "is_controller", False)

    def run(args, check=False, diff=False):
        module_args = {"api_url": API_URL, "master_key": MASTER_KEY, **args}
        module_args.update(_ansible_check_mode=check, _ansible_diff=diff)
        with patch_module_args(module_args), pytest.raises(SystemExit) as exited:
            litellm_key.main()
        out = capsys.readouterr().out
        result = json.loads(out)
        result["_raw"] = out
        assert bool(result.get("failed")) == (exited.value.code != 0), out
        return result

    return run
