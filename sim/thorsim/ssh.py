"""How Ansible reaches simulated units over SSH: the checkout's key, the units' host keys, the inventory variables.

Each unit runs sshd with a `thor` account (keys only, sudo, no root login) and makes its own host keys at
first start; `sim/fleet up` authorizes this checkout's key (and any other public keys it is given) for
`thor` and records every unit's host key, so that SSH checks host keys strictly, as on a real fleet.
"""

from __future__ import annotations

import fcntl
import shlex
import subprocess
from collections.abc import Iterable
from pathlib import Path

from docker.models.containers import Container

from . import CACHE_DIR

SSH_DIR = CACHE_DIR / "ssh"
KEY = SSH_DIR / "id_ed25519"
KNOWN_HOSTS = SSH_DIR / "known_hosts"
USER = "thor"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"


def ensure_key(key: Path = KEY) -> str:
    """This checkout's key pair, made once; returns the public key."""
    if not key.exists():
        # The folder stays readable: known_hosts is shared with other operators of this machine (the key is 0600).
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "thorfleet-sim", "-f", str(key)],
            check=True,
        )
    return key.with_suffix(".pub").read_text(encoding="utf-8").strip()


def authorize(container: Container, public_keys: Iterable[str]) -> str:
    """Make `public_keys` the keys that may log in as thor; return the unit's host key ('' if it has none)."""
    keys = "".join(f"{key.strip()}\n" for key in public_keys)
    script = (
        f"install -d -m 0700 -o {USER} -g {USER} ~{USER}/.ssh"
        f" && printf %s {shlex.quote(keys)} > ~{USER}/.ssh/authorized_keys"
        f" && chown {USER}:{USER} ~{USER}/.ssh/authorized_keys && chmod 0600 ~{USER}/.ssh/authorized_keys"
        f" && cat {HOST_KEY}"
    )
    code, out = container.exec_run(["sh", "-c", script])
    if code != 0:
        raise SystemExit(f"fleet up: cannot authorize the SSH key on {container.name}: {out.decode().strip()}")
    return " ".join(out.decode().split()[:2])


def record_host_keys(host_keys: dict[str, str], known_hosts: Path = KNOWN_HOSTS) -> None:
    """Replace the known_hosts lines of these addresses (a removed fleet's addresses are reused by the next)."""
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    with open(known_hosts.with_suffix(".lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # fleets may come up side by side (molecule, benchmarks)
        lines = known_hosts.read_text(encoding="utf-8").splitlines() if known_hosts.exists() else []
        kept = [line for line in lines if line.split(" ", 1)[0] not in host_keys]
        kept += [f"{address} {key}" for address, key in host_keys.items()]
        known_hosts.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        known_hosts.chmod(0o644)


def config_path(fleet: str) -> Path:
    return SSH_DIR / f"{fleet}.config"


def write_config(fleet: str, addresses: dict[str, str], key: Path = KEY, known_hosts: Path = KNOWN_HOSTS) -> Path:
    """An ssh_config with every container of a fleet by name: `ssh -F sim/.cache/ssh/FLEET.config thor-01`."""
    blocks = [
        f"Host {name}\n  HostName {address}\n  User {USER}\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known_hosts}\n  StrictHostKeyChecking yes\n"
        for name, address in addresses.items()
    ]
    path = config_path(fleet)
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def inventory_vars(key: Path = KEY, known_hosts: Path = KNOWN_HOSTS) -> dict[str, object]:
    """The variables that reach a unit the way inventories/workshop does: SSH as thor, sudo to root."""
    return {
        "ansible_user": USER,
        "ansible_become": True,
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        ),
    }
