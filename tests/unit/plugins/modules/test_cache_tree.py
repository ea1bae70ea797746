"""cache_tree: manifests with links as links, verification, and fetches from a real rsync daemon on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time

import pytest
import yaml
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.testing import patch_module_args
from ansible_collections.thorfleet.llm.plugins.modules import cache_tree
from thorsim.hfcache import make_model

from ..docs import assert_documented

REPO = "openai/gpt-oss-120b"


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


@pytest.fixture
def source(tmp_path):
    hub = tmp_path / "src" / "hf"
    make_model(hub / "hub", REPO, {"config.json": b"{}", "model.safetensors": os.urandom(300_000)})
    (tmp_path / "src" / "vc" / "torch_compile_cache").mkdir(parents=True)
    (tmp_path / "src" / "vc" / "torch_compile_cache" / "graph.py").write_text("# graph\n")
    return {"huggingface": str(hub), "vllm_cache": str(tmp_path / "src" / "vc")}


@pytest.fixture
def daemon(tmp_path, source):
    """rsync --daemon on 127.0.0.1, serving the source trees read-only as the role configures it."""
    if not shutil.which("rsync"):
        pytest.skip("rsync is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    modules = "".join(f"[{name}]\npath = {path}\n" for name, path in source.items())
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


def unit_trees(tmp_path):
    return {"huggingface": str(tmp_path / "unit" / "hf"), "vllm_cache": str(tmp_path / "unit" / "vc")}


def test_documentation_matches_the_argument_spec():
    assert_documented(cache_tree.DOCUMENTATION, cache_tree.argument_spec())
    yaml.safe_load(cache_tree.EXAMPLES)
    yaml.safe_load(cache_tree.RETURN)


def test_manifest_records_files_by_hash_and_links_by_target(run, source, tmp_path):
    result = run(trees=source, hash_cache=str(tmp_path / "h.json"))
    manifest = result["manifest"]
    links = {k: v["link"] for k, v in manifest.items() if "link" in v}
    assert set(links) == {
        f"huggingface/hub/models--openai--gpt-oss-120b/snapshots/{p}"
        for p in (
            "c1899de289a04d12100db370d81485cdf75e47ca/config.json",
            "c1899de289a04d12100db370d81485cdf75e47ca/model.safetensors",
        )
    }
    assert all(target.startswith("../../blobs/") for target in links.values())
    graph = manifest["vllm_cache/torch_compile_cache/graph.py"]
    assert graph == {"size": 8, "sha256": hashlib.sha256(b"# graph\n").hexdigest()}
    assert (result["files"], result["hashed"], result["changed"]) == (4, 4, False)


def test_hashes_are_reused_while_the_file_is_unchanged(run, source, tmp_path):
    cache = str(tmp_path / "h.json")
    run(trees=source, hash_cache=cache)
    assert run(trees=source, hash_cache=cache)["hashed"] == 0
    graph = os.path.join(source["vllm_cache"], "torch_compile_cache", "graph.py")
    stat = os.stat(graph)
    with open(graph, "r+b") as f:
        f.write(b"X")  # same size; mtime put back: only the ctime tells
    os.utime(graph, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = run(trees=source, hash_cache=cache)
    assert again["hashed"] == 1
    assert (
        again["manifest"]["vllm_cache/torch_compile_cache/graph.py"]["sha256"]
        != hashlib.sha256(b"# graph\n").hexdigest()
    )
    assert run(trees=source, hash_cache=cache, rehash=True)["hashed"] == 4


def test_a_missing_source_folder_is_an_error_naming_it(run, tmp_path):
    result = run(trees={"huggingface": str(tmp_path / "nowhere")}, hash_cache=str(tmp_path / "h.json"))
    assert result["failed"] and str(tmp_path / "nowhere") in result["msg"]


def test_fetch_fills_an_empty_unit_then_moves_nothing(run, source, daemon, tmp_path):
    manifest = run(trees=source, hash_cache=str(tmp_path / "s.json"))["manifest"]
    trees = unit_trees(tmp_path)
    args = {"trees": trees, "manifest": manifest, "source": daemon, "hash_cache": str(tmp_path / "u.json")}

    planned = run(check=True, **args)
    assert planned["changed"] and not planned["complete"] and len(planned["missing"]) == len(manifest)
    assert not os.path.exists(trees["huggingface"])

    first = run(**args)
    assert first["changed"] and first["complete"] and first["fetched"] == 4
    assert first["received_bytes"] > 300_000
    snapshot = os.path.join(trees["huggingface"], "hub", "models--openai--gpt-oss-120b", "snapshots")
    link = os.path.join(snapshot, os.listdir(snapshot)[0], "model.safetensors")
    assert os.path.islink(link) and os.readlink(link).startswith("../../blobs/")

    second = run(**args)
    assert (second["changed"], second["complete"], second["missing"], second["differ"]) == (False, True, [], [])
    assert "fetched" not in second


def test_fetch_repairs_a_deleted_a_corrupted_and_a_short_file_only(run, source, daemon, tmp_path):
    manifest = run(trees=source, hash_cache=str(tmp_path / "s.json"))["manifest"]
    trees = unit_trees(tmp_path)
    args = {"trees": trees, "manifest": manifest, "source": daemon, "hash_cache": str(tmp_path / "u.json")}
    run(**args)
    blobs = os.path.join(trees["huggingface"], "hub", "models--openai--gpt-oss-120b", "blobs")
    big = max(os.listdir(blobs), key=lambda b: os.path.getsize(os.path.join(blobs, b)))
    small = min(os.listdir(blobs), key=lambda b: os.path.getsize(os.path.join(blobs, b)))
    graph = os.path.join(trees["vllm_cache"], "torch_compile_cache", "graph.py")
    os.remove(os.path.join(blobs, small))
    with open(os.path.join(blobs, big), "r+b") as f:
        f.truncate(1000)  # cut short, as an interrupted transfer leaves it
    stat = os.stat(graph)
    with open(graph, "r+b") as f:
        f.write(b"#!")
    os.utime(graph, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    result = run(**args)
    prefix = "huggingface/hub/models--openai--gpt-oss-120b/blobs/"
    assert result["missing"] == [prefix + small]
    assert result["differ"] == [prefix + big, "vllm_cache/torch_compile_cache/graph.py"]
    assert result["complete"] and result["fetched"] == 3
    assert run(**args)["changed"] is False


def test_an_unreachable_source_fails_and_says_which(run, source, tmp_path):
    manifest = run(trees=source, hash_cache=str(tmp_path / "s.json"))["manifest"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(
        trees=unit_trees(tmp_path),
        manifest=manifest,
        source=f"rsync://127.0.0.1:{port}",
        hash_cache=str(tmp_path / "u.json"),
        timeout=5,
    )
    assert result["failed"] and f"rsync://127.0.0.1:{port}/huggingface failed" in result["msg"]


def test_links_are_made_from_the_manifest_where_the_files_came_without_them(run, source, tmp_path):
    manifest = run(trees=source, hash_cache=str(tmp_path / "h.json"))["manifest"]
    unit = unit_trees(tmp_path)
    # What a torrent brings: the regular files only, and one link pointing elsewhere.
    for key, entry in manifest.items():
        tree, _slash, rel = key.partition("/")
        path = os.path.join(unit[tree], rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if "sha256" in entry:
            shutil.copyfile(os.path.join(source[tree], rel), path)
    wrong = next(key for key, entry in manifest.items() if "link" in entry)
    os.symlink("../../blobs/elsewhere", os.path.join(unit["huggingface"], wrong.partition("/")[2]))
    args = dict(trees=unit, manifest=manifest, hash_cache=str(tmp_path / "u.json"), make_links=True)
    checked = run(check=True, **args)
    assert (checked["changed"], checked["linked"], checked["complete"]) == (True, 2, False)
    made = run(**args)
    assert (made["changed"], made["linked"], made["complete"], made["missing"], made["differ"]) == (
        True,
        2,
        True,
        [],
        [],
    )
    assert run(**args)["changed"] is False
