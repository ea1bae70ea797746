"""cache_torrent on the cache source: the folder of links, the torrent made once per manifest, an earlier manifest's
removed, check mode; mktorrent stood in for by a writer of the same format (the cache scenario runs the real one)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.thorfleet.llm.plugins.modules import cache_torrent

from ..docs import assert_documented
from ..module_utils.test_cache_torrent import bencode


@pytest.fixture
def source(tmp_path):
    trees = {"huggingface": tmp_path / "hf", "vllm_cache": tmp_path / "cc"}
    (trees["huggingface"] / "hub" / "blobs").mkdir(parents=True)
    (trees["huggingface"] / "hub" / "blobs" / "aaa").write_bytes(b"a" * 1000)
    (trees["vllm_cache"]).mkdir()
    (trees["vllm_cache"] / "model.bin").write_bytes(b"c" * 5000)
    manifest = {
        "huggingface/hub/blobs/aaa": {"size": 1000, "sha256": hashlib.sha256(b"a" * 1000).hexdigest()},
        "huggingface/hub/snapshots/rev/config.json": {"link": "../../blobs/aaa"},
        "vllm_cache/model.bin": {"size": 5000, "sha256": hashlib.sha256(b"c" * 5000).hexdigest()},
    }
    return {name: str(path) for name, path in trees.items()}, manifest, str(tmp_path / "torrent")


def fake_mktorrent(made):
    """run_command as mktorrent answers -p -l L -a URL -n NAME -o OUT FOLDER: a private torrent of FOLDER's files
    (links followed), sorted by path; `made` counts the calls."""

    def run_command(self, argv, **_kwargs):
        made.append(argv)
        assert argv[1] == "-p"
        args = dict(zip(argv[2:-1:2], argv[3:-1:2], strict=True))
        folder = argv[-1]
        files = []
        for dirpath, _dirs, names in sorted(os.walk(folder)):
            for entry in sorted(names):
                path = os.path.join(dirpath, entry)
                rel = os.path.relpath(path, folder).split(os.sep)
                files.append({"length": os.path.getsize(path), "path": rel})
        info = {"name": args["-n"], "piece length": 1 << int(args["-l"]), "pieces": b"", "private": 1, "files": files}
        Path(args["-o"]).write_bytes(bencode({"announce": args["-a"], "info": info}))
        return 0, "", ""

    return run_command


@pytest.fixture
def run(capsys, monkeypatch):
    monkeypatch.setattr(module_utils_internal, "is_controller", False)
    made = []
    monkeypatch.setattr(AnsibleModule, "run_command", fake_mktorrent(made))
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, arg, **_k: f"/usr/bin/{arg}")

    def run(check=False, **args):
        with patch_module_args({**args, "_ansible_check_mode": check}), pytest.raises(SystemExit):
            cache_torrent.main()
        return json.loads(capsys.readouterr().out)

    run.made = made
    return run


def test_the_torrent_is_made_once_from_links_at_the_manifest_keys(run, source):
    trees, manifest, workdir = source
    args = dict(trees=trees, manifest=manifest, workdir=workdir, announce="http://10.0.0.1:6969/announce")
    first = run(**args)
    folder = os.path.join(workdir, first["name"])
    assert first["changed"] and first["steps"][-1] == f"make {first['torrent']}"
    assert os.readlink(os.path.join(folder, "vllm_cache/model.bin")) == os.path.join(trees["vllm_cache"], "model.bin")
    assert first["files"] == [["huggingface/hub/blobs/aaa", 1000], ["vllm_cache/model.bin", 5000]]
    assert (first["bytes"], first["piece_length"], len(first["info_hash"])) == (6000, 1 << 18, 40)
    assert run.made[0][1:5] == ["-p", "-l", "18", "-a"]
    again = run(**args)
    assert (again["changed"], again["steps"], again["info_hash"], len(run.made)) == (False, [], first["info_hash"], 1)


def test_another_manifest_replaces_the_torrent_and_its_folder(run, source):
    trees, manifest, workdir = source
    args = dict(trees=trees, workdir=workdir, announce="http://10.0.0.1:6969/announce")
    first = run(manifest=manifest, **args)
    Path(trees["vllm_cache"], "model.bin").write_bytes(b"d" * 5000)
    changed = {**manifest, "vllm_cache/model.bin": {"size": 5000, "sha256": hashlib.sha256(b"d" * 5000).hexdigest()}}
    second = run(manifest=changed, **args)
    assert second["name"] != first["name"]
    assert sorted(os.listdir(workdir)) == sorted([second["name"], second["name"] + ".torrent"])


def test_check_mode_makes_nothing_and_says_what_it_would(run, source):
    trees, manifest, workdir = source
    result = run(check=True, trees=trees, manifest=manifest, workdir=workdir, announce="http://10.0.0.1:6969/announce")
    assert result["changed"] and result["info_hash"] == "" and not os.path.exists(workdir) and run.made == []
    assert result["files"] == [["huggingface/hub/blobs/aaa", 1000], ["vllm_cache/model.bin", 5000]]


def test_documented_as_specified():
    assert_documented(cache_torrent.DOCUMENTATION, cache_torrent.argument_spec())
