"""cache_tree as Ansible runs it: its documentation, check mode, a fetch from a real rsync daemon on loopback that a
second run has nothing to add to, and its failures. The engine's own tests: module_utils/test_cache_tree.py."""

from __future__ import annotations

import json
import os
import socket

import pytest
import yaml
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.testing import patch_module_args
from ansible_collections.thorfleet.llm.plugins.modules import cache_tree

from ..docs import assert_documented


@pytest.fixture
def run(capsys, monkeypatch):
    monkeypatch.setattr(module_utils_internal, "is_controller", False)

    def run(check=False, **args):
        with patch_module_args({**args, "_ansible_check_mode": check}), pytest.raises(SystemExit) as exited:
            cache_tree.main()
        result = json.loads(capsys.readouterr().out)
        assert bool(result.get("failed")) == (exited.value.code != 0), result
        return result

    return run


def test_documentation_matches_the_argument_spec():
    assert_documented(cache_tree.DOCUMENTATION, cache_tree.argument_spec())
    yaml.safe_load(cache_tree.EXAMPLES)
    yaml.safe_load(cache_tree.RETURN)


def test_a_missing_source_folder_is_an_error_naming_it(run, tmp_path):
    result = run(trees={"huggingface": str(tmp_path / "nowhere")}, hash_cache=str(tmp_path / "h.json"))
    assert result["failed"] and str(tmp_path / "nowhere") in result["msg"]


def test_fetch_fills_an_empty_unit_then_moves_nothing(run, source_trees, rsync_daemon, unit_trees, tmp_path):
    manifest = run(trees=source_trees, hash_cache=str(tmp_path / "s.json"))["manifest"]
    args = {"trees": unit_trees, "manifest": manifest, "source": rsync_daemon, "hash_cache": str(tmp_path / "u.json")}

    planned = run(check=True, **args)
    assert planned["changed"] and not planned["complete"] and len(planned["missing"]) == len(manifest)
    assert not os.path.exists(unit_trees["huggingface"])

    first = run(**args)
    assert first["changed"] and first["complete"] and first["fetched"] == 4
    assert first["received_bytes"] > 300_000
    snapshot = os.path.join(unit_trees["huggingface"], "hub", "models--openai--gpt-oss-120b", "snapshots")
    link = os.path.join(snapshot, os.listdir(snapshot)[0], "model.safetensors")
    assert os.path.islink(link) and os.readlink(link).startswith("../../blobs/")

    second = run(**args)
    assert (second["changed"], second["complete"], second["missing"], second["differ"]) == (False, True, [], [])
    assert "fetched" not in second


def test_an_unreachable_source_fails_and_says_which(run, source_trees, unit_trees, tmp_path):
    manifest = run(trees=source_trees, hash_cache=str(tmp_path / "s.json"))["manifest"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(
        trees=unit_trees,
        manifest=manifest,
        source=f"rsync://127.0.0.1:{port}",
        hash_cache=str(tmp_path / "u.json"),
        timeout=5,
    )
    assert result["failed"] and f"rsync://127.0.0.1:{port}/huggingface failed" in result["msg"]
