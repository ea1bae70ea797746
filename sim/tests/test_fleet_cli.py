"""The `sim/fleet` command's input handling, inventory and image input hashing (no Docker needed)."""

import subprocess
import sys

import pytest
import yaml
from thorsim import SIM_DIR, cli, fleet, images


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["up", "0"], "0 units: a fleet has 1 to 99"),
        (["up", "abc"], "'abc' is not a whole number of units"),
        (["up", "200"], "200 units: a fleet has 1 to 99"),
        (["up", "-3"], "a fleet has 1 to 99"),
        (["up", "2", "--fleet", "Bad_Name"], "'Bad_Name': use lower-case letters"),
        (["up"], "the following arguments are required: N"),
        (["launch"], "invalid choice: 'launch'"),
    ],
)
def test_bad_input_is_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_the_command_itself_rejects_bad_counts_before_touching_docker():
    result = subprocess.run(
        [sys.executable, str(SIM_DIR / "fleet"), "up", "200"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "usage: fleet up" in result.stderr


def test_unit_names_and_defaults():
    args = cli.parser().parse_args(["up", "3"])
    assert (args.count, args.fleet, args.prefix, args.ephemeral) == (3, "sim", "thor", False)
    assert fleet.Fleet().unit_names(3) == ["thor-01", "thor-02", "thor-03"]
    assert fleet.Fleet("smoke", "smoke-thor").unit_names(1) == ["smoke-thor-01"]


def test_inventory_maps_container_names_to_thor_hostnames(tmp_path):
    smoke = fleet.Fleet("smoke", "smoke-thor", ephemeral=True)
    path = tmp_path / "hosts.yml"
    fleet.write_inventory(path, smoke, smoke.unit_names(2))
    group = yaml.safe_load(path.read_text())["all"]["children"]["thor"]
    assert group["hosts"] == {
        "thor-01": {"ansible_host": "smoke-thor-01"},
        "thor-02": {"ansible_host": "smoke-thor-02"},
    }
    assert group["vars"]["ansible_connection"] == "community.docker.docker"


def test_only_an_inventory_sim_fleet_wrote_is_its_own(tmp_path):
    path = tmp_path / "hosts.yml"
    assert fleet.inventory_is_ours(path)
    fleet.write_inventory(path, fleet.Fleet("workshop"), ["thor-01"])
    assert fleet.inventory_is_ours(path)
    # The collection's own inventory of the same name: neither overwritten by `up` nor removed by `down`.
    assert not fleet.inventory_is_ours(fleet.REPO_DIR / "inventories/workshop/hosts.yml")


def test_up_refuses_to_overwrite_an_inventory_it_did_not_write(tmp_path, capsys):
    path = tmp_path / "hosts.yml"
    path.write_text("---\nall: {}\n")
    assert cli.main(["up", "1", "--fleet", "workshop", "--inventory", str(path)]) == 1
    assert "was not written by sim/fleet" in capsys.readouterr().err
    assert path.read_text() == "---\nall: {}\n"


def test_inventory_of_the_default_fleet_needs_no_ansible_host():
    hosts = fleet.inventory_data(fleet.Fleet(), ["thor-01"])["all"]["children"]["thor"]["hosts"]
    assert hosts == {"thor-01": {}}


def test_labels_mark_test_fleets_for_pruning():
    assert fleet.Fleet("smoke", ephemeral=True).labels[fleet.LABEL_EPHEMERAL] == "1"
    assert fleet.LABEL_EPHEMERAL not in fleet.Fleet().labels


def test_capabilities_never_ask_for_what_the_kernel_lacks():
    assert "SYS_RESOURCE" not in fleet.CAPABILITIES
    assert not {"ALL", "BPF", "PERFMON", "CHECKPOINT_RESTORE"} & set(fleet.CAPABILITIES)
    assert len(set(fleet.CAPABILITIES)) == len(fleet.CAPABILITIES) == 37


def test_inputs_hash_follows_content_mode_and_base(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "Dockerfile").write_text("FROM x\n")
    tool = tmp_path / "t" / "tool"
    tool.write_text("#!/bin/sh\n")
    image = images.Image("t", base=images.Image("root", packages=("python3",)))
    first = images.inputs_hash(image)
    assert images.inputs_hash(image) == first
    assert images.inputs_hash(images.Image("t", base=images.Image("root", packages=("perl",)))) != first
    tool.chmod(0o755)
    after_chmod = images.inputs_hash(image)
    assert after_chmod != first
    tool.write_text("#!/bin/sh\nexit 0\n")
    assert images.inputs_hash(image) != after_chmod


def test_inputs_hash_takes_in_a_package_folder_but_not_its_bytecode(tmp_path, monkeypatch):
    # litellm-sim is a package: a change to any of its modules must rebuild the image, a run of its tests not.
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path)
    package = tmp_path / "t" / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    (tmp_path / "t" / "Dockerfile").write_text("FROM x\nCOPY pkg/ /opt/pkg/\n")
    module = package / "mod.py"
    module.write_text("X = 1\n")
    image = images.Image("t", base=images.Image("root", packages=("python3",)))
    first = images.inputs_hash(image)
    (package / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    assert images.inputs_hash(image) == first
    module.write_text("X = 2\n")
    assert images.inputs_hash(image) != first


def test_archives_are_compressed_and_named_after_the_image():
    assert images.POSTGRES.archive_path.name == "postgres.tar.gz"
    assert images.POSTGRES.base is images.RUNTIME
    assert images.RUNTIME.context is None


def test_sim_vars_are_made_once_and_kept(tmp_path):
    path = tmp_path / "group_vars" / "thor" / "generated.yml"
    fleet.write_sim_vars(path)
    first = yaml.safe_load(path.read_text())
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert first["litellm_proxy_master_key"].startswith("sk-")
    assert len(first["litellm_proxy_master_key"]) >= 32
    assert first["container_images_archive_dir"].endswith("sim/.cache/archives")
    fleet.write_sim_vars(path)
    assert yaml.safe_load(path.read_text()) == first
