"""The action group `litellm` (meta/runtime.yml): it holds every module that takes the LiteLLM connection
options, and `module_defaults: {group/thorfleet.llm.litellm: ...}` reaches those modules when a play runs them."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import ansible_collections.thorfleet.llm as collection
import yaml

REPO = Path(__file__).resolve().parents[2]
FRAGMENT = "thorfleet.llm.litellm"


def documentation(path: Path) -> dict:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            getattr(target, "id", "") == "DOCUMENTATION" for target in node.targets
        ):
            return yaml.safe_load(node.value.value)
    raise AssertionError(f"{path} has no DOCUMENTATION")


def modules_with_fragment() -> set[str]:
    return {
        path.stem
        for path in (REPO / "plugins" / "modules").glob("*.py")
        if FRAGMENT in documentation(path).get("extends_documentation_fragment", [])
    }


def group() -> set[str]:
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    return set(runtime.get("action_groups", {}).get("litellm", []))


def test_every_module_with_the_litellm_options_is_in_the_group():
    modules = modules_with_fragment()
    assert modules, f"no module extends {FRAGMENT}"
    assert not modules - group(), f"add to action_groups.litellm in meta/runtime.yml: {sorted(modules - group())}"
    assert not group() - modules, f"in action_groups.litellm without {FRAGMENT}'s options: {sorted(group() - modules)}"


# The tasks name neither the proxy nor the master key: both come from module_defaults, so a module outside the
# group would fail on the missing master key instead of on the proxy's name, which does not resolve (RFC 2606).
PLAY = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/thorfleet.llm.litellm:
      api_url: http://litellm.invalid:12434
      master_key: sk-master-from-module-defaults
      retries: 0
  tasks:
    - name: A key
      thorfleet.llm.litellm_key:
        key_alias: alice
      register: key
      ignore_errors: true

    - name: Spend
      thorfleet.llm.litellm_spend_info:
      register: spend
      ignore_errors: true

    - name: Both went to the proxy module_defaults named, with its master key
      ansible.builtin.assert:
        that:
          - key.msg is search('cannot reach the LiteLLM proxy')
          - spend.msg is search('cannot reach the LiteLLM proxy')
"""


def test_module_defaults_through_the_group_reach_every_module(tmp_path):
    (tmp_path / "play.yml").write_text(PLAY)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1"}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(Path(collection.__path__[0]).parents[2])  # the root the tests import from
    run = subprocess.run(
        [
            Path(sys.executable).with_name("ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            tmp_path / "play.yml",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,  # the assertion below shows the play's output
    )
    assert run.returncode == 0, run.stdout + run.stderr
