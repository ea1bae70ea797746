"""The cache cascade on four simulated units: every copy matches the source, re-runs move nothing, damage heals."""

import hashlib
import json
import os
import re
import shlex
from pathlib import Path

import docker
import pytest
import testinfra
from scenario import playbook
from thorsim.cache import source_root

INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
REPORT = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "cache-report.json"
SOURCE = source_root(os.environ["MOLECULE_SCENARIO_NAME"]) / "data"
TREES = {"models/huggingface": "/opt/thorfleet/data/models/huggingface", "vllm_cache": "/opt/thorfleet/data/vllm_cache"}
TREES["encodings"] = "/opt/thorfleet/data/encodings"
# Written here rather than imported from the collection, so that a fault in its manifest code cannot hide.
MANIFEST = """
import hashlib, json, os, sys
out = {}
for name, root in json.loads(sys.argv[1]).items():
    for d, dirs, files in os.walk(root):
        for f in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            p = os.path.join(d, f)
            key = name + "/" + os.path.relpath(p, root)
            out[key] = "-> " + os.readlink(p) if os.path.islink(p) else hashlib.sha256(open(p, "rb").read()).hexdigest()
print(json.dumps(out, sort_keys=True))
"""


def source_manifest():
    out = {}
    for name in TREES:
        root = SOURCE / name
        for path in sorted(root.rglob("*")):
            key = f"{name}/{path.relative_to(root)}"
            if path.is_symlink():
                out[key] = "-> " + os.readlink(path)
            elif path.is_file():
                out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def unit_manifest(host):
    return json.loads(host.check_output(f"python3 -c {shlex.quote(MANIFEST)} {shlex.quote(json.dumps(TREES))}"))


def unit(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=str(INVENTORY))


def run_cache(*args):
    """Run cache.yml; return the run's report and the changed count of every host in the recap."""
    REPORT.unlink(missing_ok=True)
    rc, out = playbook("cache", "-e", f"model_cache_report_file={REPORT}", *args)
    assert rc == 0, out[-3000:]
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)
    changed = {m[0]: int(m[1]) for m in re.findall(r"^(\S+)\s+:.*changed=(\d+)", out, re.MULTILINE)}
    return json.loads(REPORT.read_text()), changed


def test_source_is_a_few_hundred_mb_in_the_hub_layout_with_relative_links():
    manifest = source_manifest()
    links = [k for k, v in manifest.items() if v.startswith("-> ../../blobs/")]
    shards = [k for k in links if re.search(r"model-\d{5}-of-\d{5}\.safetensors$", k)]
    assert len(shards) >= 4
    assert any(k.startswith("vllm_cache/torch_compile_cache/") for k in manifest)
    size = sum(p.stat().st_size for p in SOURCE.rglob("*") if p.is_file() and not p.is_symlink())
    assert size > 200 * 1024 * 1024


def test_every_unit_holds_exactly_the_source(host):
    manifest = unit_manifest(host)
    assert manifest == source_manifest()


def test_a_second_run_moves_nothing():
    report, changed = run_cache()
    assert report["rounds"] == []
    assert report["unfilled"] == []
    assert set(changed) >= {"thor-01", "thor-02", "thor-03", "thor-04"}
    assert all(count == 0 for count in changed.values()), changed


@pytest.fixture
def damaged():
    """thor-03 with one shard deleted and another overwritten in place: same size, same mtime, other bytes."""
    thor = unit("thor-03")
    blobs = "/opt/thorfleet/data/models/huggingface/hub/models--openai--gpt-oss-120b/blobs"
    files = thor.check_output(f"ls -S {blobs}").split()[:2]
    deleted, corrupted = f"{blobs}/{files[0]}", f"{blobs}/{files[1]}"
    size = thor.file(corrupted).size
    mtime = thor.check_output(f"stat -c %Y {corrupted}")
    thor.check_output(f"rm {deleted}")
    thor.check_output(f"dd if=/dev/urandom of={corrupted} bs=4096 count=1 seek=10 conv=notrunc status=none")
    thor.check_output(f"touch -d @{mtime} {corrupted}")
    assert thor.file(corrupted).size == size
    return thor, deleted, corrupted


def test_a_re_run_repairs_a_deleted_and_a_corrupted_file(damaged):
    thor, deleted, _corrupted = damaged
    report, changed = run_cache()
    assert [sorted(r["finished"]) for r in report["rounds"]] == [["thor-03"]]
    moved = report["rounds"][0]["bytes"]
    # The two files moved, nothing else: a shard is at most 64 MiB.
    assert thor.file(deleted).size <= moved <= 2 * 64 * 1024 * 1024 + 1024 * 1024
    assert changed["thor-03"] > 0
    assert all(changed[name] == 0 for name in ("thor-01", "thor-02", "thor-04")), changed
    assert unit_manifest(thor) == source_manifest()
    again, changed = run_cache()
    assert again["rounds"] == []
    assert all(count == 0 for count in changed.values()), changed


def test_a_stopped_source_is_named_before_any_unit_changes():
    """Last: the source is started again, but its address may differ afterwards."""
    source = docker.from_env().containers.get(f"{os.environ['MOLECULE_SCENARIO_NAME']}-cache-source")
    source.stop(timeout=5)
    try:
        rc, out = playbook("cache")
    finally:
        source.start()
    assert rc != 0
    assert "The cache source cache_source (" in out
    assert "cannot be reached: it is stopped, or the inventory does not reach it as it is" in out
    assert "Module result deserialization failed" not in out
    changed = {m[0]: int(m[1]) for m in re.findall(r"^(\S+)\s+:.*changed=(\d+)", out, re.MULTILINE)}
    assert set(changed) >= {"thor-01", "thor-02", "thor-03", "thor-04"}
    assert all(count == 0 for count in changed.values()), changed
