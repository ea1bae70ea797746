"""The cache_tree engine (module_utils/_cache_tree.py): manifests with links as links, hashes reused from the hash
cache, and a unit's copy compared, linked and repaired from a real rsync daemon on loopback."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.thorfleet.llm.plugins.module_utils._cache_tree import (
    HashCache,
    act,
    compare,
    fetch,
    plan,
    read,
    totals,
    walk,
)


@pytest.fixture
def module(monkeypatch):
    """The AnsibleModule that fetch() runs rsync through (its tmpdir holds the file lists)."""
    monkeypatch.setattr(module_utils_internal, "is_controller", False)
    with patch_module_args({}):
        return AnsibleModule(argument_spec={})


def manifest_of(trees, cache, rehash=False):
    """(the manifest of `trees`, how many files were hashed), the hashes kept in `cache` as a run keeps them."""
    hashes = HashCache(cache, rehash)
    manifest = walk(trees, hashes)
    hashes.save()
    return manifest, hashes.hashed


def test_manifest_records_files_by_hash_and_links_by_target(source_trees, tmp_path):
    hashes = HashCache(str(tmp_path / "h.json"), False)
    result, steps = plan(*read(source_trees, None, hashes), False, None)
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
    counts = totals(manifest, hashes)
    assert (counts["files"], counts["hashed"], result["changed"]) == (4, 4, False)
    assert steps == {"link": [], "fetch": None}


def test_hashes_are_reused_while_the_file_is_unchanged(source_trees, tmp_path):
    cache = str(tmp_path / "h.json")
    manifest_of(source_trees, cache)
    assert manifest_of(source_trees, cache)[1] == 0
    graph = os.path.join(source_trees["vllm_cache"], "torch_compile_cache", "graph.py")
    stat = os.stat(graph)
    with open(graph, "r+b") as f:
        f.write(b"X")  # same size; mtime put back: only the ctime tells
    os.utime(graph, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    manifest, hashed = manifest_of(source_trees, cache)
    assert hashed == 1
    assert manifest["vllm_cache/torch_compile_cache/graph.py"]["sha256"] != hashlib.sha256(b"# graph\n").hexdigest()
    assert manifest_of(source_trees, cache, rehash=True)[1] == 4


def test_fetch_repairs_a_deleted_a_corrupted_and_a_short_file_only(
    module, source_trees, rsync_daemon, unit_trees, tmp_path
):
    manifest = manifest_of(source_trees, str(tmp_path / "s.json"))[0]
    cache = str(tmp_path / "u.json")
    fetch(module, unit_trees, rsync_daemon, sorted(manifest), 300)
    filled = HashCache(cache, False)
    assert compare(unit_trees, manifest, filled) == ([], [], [])
    filled.save()  # the damage below is to be found behind the hashes a run kept
    blobs = os.path.join(unit_trees["huggingface"], "hub", "models--openai--gpt-oss-120b", "blobs")
    big = max(os.listdir(blobs), key=lambda b: os.path.getsize(os.path.join(blobs, b)))
    small = min(os.listdir(blobs), key=lambda b: os.path.getsize(os.path.join(blobs, b)))
    graph = os.path.join(unit_trees["vllm_cache"], "torch_compile_cache", "graph.py")
    os.remove(os.path.join(blobs, small))
    with open(os.path.join(blobs, big), "r+b") as f:
        f.truncate(1000)  # cut short, as an interrupted transfer leaves it
    stat = os.stat(graph)
    with open(graph, "r+b") as f:
        f.write(b"#!")
    os.utime(graph, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    hashes = HashCache(cache, False)
    found = compare(unit_trees, manifest, hashes)
    result = act(module, unit_trees, manifest, hashes, found, *plan(manifest, found, False, rsync_daemon), 300)
    prefix = "huggingface/hub/models--openai--gpt-oss-120b/blobs/"
    assert found[2] == [prefix + big]  # kept for rsync to resume
    assert result["missing"] == [prefix + small]
    assert result["differ"] == [prefix + big, "vllm_cache/torch_compile_cache/graph.py"]
    assert result["complete"] and result["fetched"] == 3
    again = compare(unit_trees, manifest, HashCache(cache, False))
    assert plan(manifest, again, False, rsync_daemon)[0]["changed"] is False


def test_links_are_made_from_the_manifest_where_the_files_came_without_them(module, source_trees, unit_trees, tmp_path):
    manifest = manifest_of(source_trees, str(tmp_path / "h.json"))[0]
    # What a torrent brings: the regular files only, and one link pointing elsewhere.
    for key, entry in manifest.items():
        tree, _slash, rel = key.partition("/")
        path = os.path.join(unit_trees[tree], rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if "sha256" in entry:
            shutil.copyfile(os.path.join(source_trees[tree], rel), path)
    wrong = next(key for key, entry in manifest.items() if "link" in entry)
    os.symlink("../../blobs/elsewhere", os.path.join(unit_trees["huggingface"], wrong.partition("/")[2]))
    cache = str(tmp_path / "u.json")
    hashes = HashCache(cache, False)
    found = compare(unit_trees, manifest, hashes)
    checked, steps = plan(manifest, found, True, None)
    assert (checked["changed"], checked["linked"], checked["complete"]) == (True, 2, False)
    made = act(module, unit_trees, manifest, hashes, found, checked, steps, 300)
    assert (made["changed"], made["linked"], made["complete"], made["missing"], made["differ"]) == (
        True,
        2,
        True,
        [],
        [],
    )
    assert plan(manifest, compare(unit_trees, manifest, HashCache(cache, False)), True, None)[0]["changed"] is False
