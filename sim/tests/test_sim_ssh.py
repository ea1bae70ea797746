"""How simulated units are reached over SSH: the inventory, host keys and ssh_config (no Docker needed)."""

import yaml
from thorsim import cli, fleet, ssh


def test_ssh_is_the_default_connection_and_more_keys_can_be_authorized(tmp_path):
    assert cli.parser().parse_args(["up", "1"]).connection == "ssh"
    args = cli.parser().parse_args(
        ["up", "1", "--connection", "docker", "--authorize", "a.pub", "--authorize", "b.pub"]
    )
    assert args.connection == "docker"
    assert [p.name for p in args.authorize] == ["a.pub", "b.pub"]


def test_the_ssh_inventory_reaches_units_and_source_as_thor_with_sudo_on_their_addresses():
    smoke = fleet.Fleet("smoke", "smoke-thor", ephemeral=True)
    addresses = {"smoke-thor-01": "172.30.0.2", "smoke-thor-02": "172.30.0.3", "smoke-cache-source": "172.30.0.4"}
    data = yaml.safe_load(yaml.safe_dump(fleet.inventory_data(smoke, smoke.unit_names(2), addresses)))
    group = data["all"]["children"]["thor"]
    assert group["hosts"] == {"thor-01": {"ansible_host": "172.30.0.2"}, "thor-02": {"ansible_host": "172.30.0.3"}}
    source = data["all"]["hosts"]["cache_source"]
    assert source["ansible_host"] == "172.30.0.4"
    for reach in (group["vars"], source):
        assert "ansible_connection" not in reach  # ssh, Ansible's default
        assert reach["ansible_user"] == "thor" and reach["ansible_become"] is True
        assert reach["ansible_ssh_private_key_file"] == str(ssh.KEY)
        assert f"UserKnownHostsFile={ssh.KNOWN_HOSTS}" in reach["ansible_ssh_common_args"]
        assert "StrictHostKeyChecking=yes" in reach["ansible_ssh_common_args"]


def test_host_keys_of_reused_addresses_are_replaced_and_others_kept(tmp_path):
    known = tmp_path / "known_hosts"
    ssh.record_host_keys({"172.30.0.2": "ssh-ed25519 AAAAold", "172.30.0.3": "ssh-ed25519 AAAAother"}, known)
    ssh.record_host_keys({"172.30.0.2": "ssh-ed25519 AAAAnew"}, known)
    assert known.read_text().splitlines() == ["172.30.0.3 ssh-ed25519 AAAAother", "172.30.0.2 ssh-ed25519 AAAAnew"]
    assert known.stat().st_mode & 0o777 == 0o644  # other operators of this machine check host keys too


def test_the_ssh_config_names_every_container(tmp_path, monkeypatch):
    monkeypatch.setattr(ssh, "SSH_DIR", tmp_path)
    path = ssh.write_config("demo", {"thor-01": "172.30.0.2"}, tmp_path / "key", tmp_path / "known")
    assert path == tmp_path / "demo.config"
    text = path.read_text()
    assert "Host thor-01\n  HostName 172.30.0.2\n  User thor\n" in text
    assert f"IdentityFile {tmp_path / 'key'}" in text and "StrictHostKeyChecking yes" in text
