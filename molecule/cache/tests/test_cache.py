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
from scenario import playbook, playbook_cut
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
    if name == "cache_source":
        # Its inventory entry is templated, which testinfra's ansible backend does not render.
        return testinfra.get_host(f"docker://{os.environ['MOLECULE_SCENARIO_NAME']}-cache-source")
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=str(INVENTORY))


def run_cache(*args, output=None):
    """Run cache.yml; return the run's report and the changed count of every host in the recap (and keep what it
    printed in `output`, a list, when given)."""
    REPORT.unlink(missing_ok=True)
    rc, out = playbook("cache", "-e", f"model_cache_report_file={REPORT}", *args)
    assert rc == 0, out[-3000:]
    if output is not None:
        output.append(out)
    return json.loads(REPORT.read_text()), recap(out)


def recap(out):
    return {m[0]: int(m[1]) for m in re.findall(r"^(\S+)\s+:.*changed=(\d+)", out, re.MULTILINE)}


UNITS = ("thor-01", "thor-02", "thor-03", "thor-04")
TORRENT = ("-e", "model_cache_strategy=torrent")
PORTS = {6969: "tracker", 6881: "aria2", 6800: "aria2 RPC"}
LISTENING = """
import sys
ports = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A":
            ports.add(int(local.rsplit(":", 1)[1], 16))
print(" ".join(str(port) for port in sorted(ports & set(map(int, sys.argv[1:])))))
"""


def payload():
    return sum(p.stat().st_size for p in SOURCE.rglob("*") if p.is_file() and not p.is_symlink())


def wipe(thor):
    thor.check_output(" && ".join(f"sudo find {root} -mindepth 1 -delete" for root in TREES.values()))


def counter(thor, name):
    """Bytes the host's fleet interface has received (rx) or sent (tx)."""
    return int(thor.check_output(f"cat /sys/class/net/eth0/statistics/{name}_bytes"))


def assert_nothing_left_running():
    for name in (*UNITS, "cache_source"):
        thor = unit(name)
        assert thor.run("pgrep -x aria2c || pgrep -x opentracker").rc == 1, name
        ports = thor.check_output(f"python3 -c {shlex.quote(LISTENING)} {' '.join(map(str, PORTS))}")
        assert ports == "", f"{name} still listens on {ports}"


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
    # Links as links (the manifest says so), and none dangling.
    assert host.check_output(f"find {TREES['models/huggingface']} -xtype l") == ""


def test_the_swarm_filled_the_units_from_each_other_and_stopped():
    """Converge filled four empty units by the swarm. The source's interface has carried nothing else of size since
    it started, and each unit's nothing but its copy: counted by the kernel, not by the collection."""
    sent = counter(unit("cache_source"), "tx")
    received = [counter(unit(name), "rx") for name in UNITS]
    assert all(payload() <= count < payload() * 1.2 for count in received), (received, payload())
    # Alone, the source would have sent four copies; the units sent each other most of theirs.
    assert sent < 2.5 * payload(), (sent, payload())
    assert unit("thor-04").exists("aria2c")
    assert_nothing_left_running()


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


def changed_tasks(out):
    """{host: names of the tasks that changed it}; a task delegated to the source counts for the unit that ran it."""
    found, task = {}, None
    for line in out.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK [") : line.rindex("]")].split(" : ", 1)[-1]
        elif line.startswith("changed: ["):
            found.setdefault(line[len("changed: [") :].split("]")[0].split(" ")[0], []).append(task)
    return found


def test_a_re_run_repairs_a_deleted_and_a_corrupted_file(damaged):
    """By the tree cascade: the first tree run on these units (converge was the swarm) writes its daemons' settings."""
    thor, deleted, _corrupted = damaged
    output = []
    report, changed = run_cache(output=output)
    assert [sorted(r["finished"]) for r in report["rounds"]] == [["thor-03"]]
    moved = report["rounds"][0]["bytes"]
    # The two files moved, nothing else: a shard is at most 64 MiB.
    assert thor.file(deleted).size <= moved <= 2 * 64 * 1024 * 1024 + 1024 * 1024
    assert changed["thor-03"] > 0
    daemon = {"Configure the cache daemon", "Install the cache daemon's unit"}
    tasks = changed_tasks(output[0])
    assert all(set(tasks.get(name, [])) <= daemon for name in ("thor-01", "thor-02", "thor-04")), tasks
    assert unit_manifest(thor) == source_manifest()
    again, changed = run_cache()
    assert again["rounds"] == []
    assert all(count == 0 for count in changed.values()), changed


def test_a_re_run_after_the_swarm_starts_no_torrent():
    report, changed = run_cache(*TORRENT)
    assert report["swarm"] == {} and report["rounds"] == []
    assert all(count == 0 for count in changed.values()), changed
    assert_nothing_left_running()


def test_a_cut_download_resumes_an_air_gapped_unit_installs_aria2_and_a_corrupted_blob_loses_one_piece():
    """One run after a cut-off repairs four units four ways: thor-02 resumes the download it was cut in, thor-04
    (no archive, no aria2) installs aria2 from the source's .deb files, thor-03 re-fetches one corrupted piece, and
    thor-01, which lost a file and whose BitTorrent port is closed, gives the swarm up and pulls it by rsync."""
    cut, airgapped, damaged, source = unit("thor-02"), unit("thor-04"), unit("thor-03"), unit("cache_source")
    walled = unit("thor-01")
    blobs = f"{TREES['models/huggingface']}/hub/models--openai--gpt-oss-120b/blobs"
    wipe(cut)

    def held():
        found = cut.run(f"du -s --block-size=1 {TREES['models/huggingface']}")
        return int(found.stdout.split()[0]) if found.rc == 0 else 0

    def half_way():
        return held() > payload() / 2

    playbook_cut("cache", *TORRENT, "-e", "model_cache_torrent_rate_limit=12M", when=half_way)
    # The controller is gone; the hosts lose power too (nothing is stopped in order).
    services = "thorfleet-model-cache-torrent thorfleet-model-cache-tracker"
    for name in (*UNITS, "cache_source"):
        # Stopped as well, or systemd would start the killed aria2 again (Restart=on-failure).
        unit(name).run(f"sudo systemctl kill --signal=KILL {services}; sudo systemctl stop {services}")
    lacking = payload() - held()
    # What the README tells an operator to do, on a host of the units' release that reaches an archive.
    source.check_output(
        "sudo mkdir -p /srv/debs && cd /srv/debs && sudo apt-get download $(apt-cache depends --recurse"
        " --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances aria2 | grep '^[a-z]')"
    )
    airgapped.check_output("sudo apt-get purge --yes aria2 libaria2-0 && sudo apt-get autoremove --yes")
    # No archive, and no lists of one.
    airgapped.check_output("sudo mv /etc/apt/sources.list /root/ && sudo find /var/lib/apt/lists -type f -delete")
    corrupted = f"{blobs}/{damaged.check_output(f'ls -S {blobs}').split()[0]}"
    damaged.check_output(f"sudo dd if=/dev/urandom of={corrupted} bs=4096 count=1 seek=10 conv=notrunc status=none")
    lost = f"{blobs}/{walled.check_output(f'ls -S {blobs}').split()[-1]}"
    walled.check_output(f"sudo rm {lost}")
    wall = "-p tcp --dport 6881 -j DROP"
    walled.check_output(f"sudo iptables -I INPUT {wall} && sudo iptables -I OUTPUT {wall}")
    received = {name: counter(unit(name), "rx") for name in ("thor-02", "thor-03")}
    output = []
    try:
        report, changed = run_cache(
            *TORRENT, "-e", "model_cache_torrent_debs=/srv/debs", "-e", "model_cache_timeout=10", output=output
        )
    finally:
        airgapped.check_output("sudo mv /root/sources.list /etc/apt/")
        walled.check_output(f"sudo iptables -D INPUT {wall} && sudo iptables -D OUTPUT {wall}")
    received = {name: counter(unit(name), "rx") - count for name, count in received.items()}
    for thor in (cut, airgapped, damaged, walled):
        assert unit_manifest(thor) == source_manifest()
    assert sorted(report["swarm"]) == list(UNITS)
    assert (
        not report["swarm"]["thor-01"]["complete"] and "received nothing for 10 s" in report["swarm"]["thor-01"]["msg"]
    )
    assert [sorted(r["finished"]) for r in report["rounds"]] == [["thor-01"]]
    # Counted by the kernel (aria2 reports what its check found on disk and what it received as one figure): what
    # thor-02 held was checked and kept, what it lacked moved (within a piece per file being written at the cut,
    # and the protocol's and Ansible's own bytes), not the payload again.
    slack = 4 * 16 * 1024 * 1024
    assert received["thor-02"] < lacking + slack < payload(), (received, lacking)
    assert airgapped.exists("aria2c")
    # Only the damaged piece moved (256 KiB at this size; with Ansible's own bytes), not the shard (64 MB).
    assert received["thor-03"] < 24 * 1024 * 1024, received
    assert changed["thor-04"] > 0 and changed["thor-03"] > 0
    # thor-01 gave the swarm up: the last total counts the other three complete.
    assert "swarm: 3 of 4 units complete" in output[0]
    assert re.search(r"^thor-03: 100\.0% of \d+\.\d MB, [\d.]+ MB/s; from the source", output[0], re.MULTILINE)
    assert_nothing_left_running()


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
    changed = recap(out)
    assert set(changed) >= {"thor-01", "thor-02", "thor-03", "thor-04"}
    assert all(count == 0 for count in changed.values()), changed
