"""Bring simulated Thor units up and down on a user-defined Docker network."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import yaml
from docker.models.containers import Container

from . import ARCHIVE_DIR, LABEL, LABEL_EPHEMERAL, LABEL_FLEET, REPO_DIR, ssh
from .cache import make_source, source_root
from .images import UNIT, require_current

MAX_UNITS = 99  # unit names have two digits, thor-01 .. thor-99
INVENTORY_GROUP = "thor"
CONNECTIONS = ("ssh", "docker")  # ssh as on a real fleet; docker (`docker exec` as root) as an option
# Every fleet has a cache source (model_cache's `cache_source` host, a NAS on the fleet network): a unit image
# container serving the host folder cache.source_root(fleet) read-only at model_cache_source_root's default.
SOURCE_HOST = "cache_source"
SOURCE_MOUNT = "/srv/thorfleet"
# Variables every simulated fleet shares that cannot be committed: this checkout's absolute archive
# folder, and secrets made once per checkout (a real fleet keeps them in Ansible Vault).
SIM_VARS = REPO_DIR / "inventories" / "sim" / "group_vars" / INVENTORY_GROUP / "generated.yml"

# Every capability by name but SYS_RESOURCE, which this kernel's bounding set lacks, so
# `--privileged` (and `--cap-add ALL`) fail here; BPF, PERFMON and CHECKPOINT_RESTORE are unknown
# to Debian's Docker 20.10.
# fmt: off
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND",
    "AUDIT_READ",
)
# fmt: on


@dataclass(frozen=True)
class Fleet:
    """A named set of units: its network, the units' container names and their inventory."""

    name: str = "sim"
    prefix: str = "thor"
    ephemeral: bool = False

    @property
    def network(self) -> str:
        return f"thorfleet-{self.name}"

    def unit_names(self, count: int) -> list[str]:
        return [f"{self.prefix}-{i:02d}" for i in range(1, count + 1)]

    @property
    def source(self) -> str:
        return f"{self.name}-cache-source"

    @property
    def default_inventory(self) -> Path:
        return REPO_DIR / "inventories" / self.name / "hosts.yml"

    @property
    def labels(self) -> dict[str, str]:
        labels = {LABEL: "1", LABEL_FLEET: self.name}
        if self.ephemeral:
            labels[LABEL_EPHEMERAL] = "1"
        return labels


def volume_name(unit: str) -> str:
    return f"{unit}-docker"


def ensure_network(client: docker.DockerClient, fleet: Fleet) -> None:
    if not client.networks.list(names=[fleet.network]):
        client.networks.create(fleet.network, driver="bridge", labels=fleet.labels)


def start_unit(client: docker.DockerClient, fleet: Fleet, name: str, index: int) -> None:
    start_container(client, fleet, name, f"thor-{index:02d}")


def start_source(client: docker.DockerClient, fleet: Fleet) -> None:
    """The fleet's cache source: a unit-image container with the fleet's source folder mounted read-only."""
    root = make_source(source_root(fleet.name))
    start_container(client, fleet, fleet.source, "cache-source", {str(root): {"bind": SOURCE_MOUNT, "mode": "ro"}})


def start_container(
    client: docker.DockerClient, fleet: Fleet, name: str, hostname: str, mounts: dict | None = None
) -> None:
    """Create a unit-image container, or start it again if it exists but is stopped."""
    try:
        container = client.containers.get(name)
    except docker.errors.NotFound:
        container = None
    if container is not None:
        if container.labels.get(LABEL_FLEET) != fleet.name:
            raise SystemExit(f"fleet: a container named {name} exists and is not a unit of fleet {fleet.name!r}.")
        if container.status != "running":
            container.start()
        return
    client.containers.run(
        UNIT.ref,
        name=name,
        hostname=hostname,
        detach=True,
        network=fleet.network,
        labels=fleet.labels,
        cap_add=list(CAPABILITIES),
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        cgroupns="host",
        volumes={
            "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
            # A volume, not the container's overlay: on overlay the inner engine falls back to vfs.
            volume_name(name): {"bind": "/var/lib/docker", "mode": "rw"},
            **(mounts or {}),
        },
        tmpfs={"/run": "", "/run/lock": ""},
        command="/lib/systemd/systemd",
    )


def wait_ready(client: docker.DockerClient, name: str, timeout: float) -> str:
    """Wait until systemd is running and the unit's own engine answers; return a problem or ''."""
    container = client.containers.get(name)
    deadline = time.monotonic() + timeout
    problem = "no answer"
    while time.monotonic() < deadline:
        code, out = container.exec_run(["systemctl", "is-system-running", "--wait"])
        state = out.decode().strip()
        if state == "running":
            code, out = container.exec_run(["docker", "info", "--format", "{{.ServerVersion}}"])
            if code == 0:
                return ""
            problem = "inner Docker engine not answering: " + out.decode().strip()[-200:]
        elif state == "degraded":
            _, failed = container.exec_run(["systemctl", "--failed", "--no-legend", "--plain"])
            return "systemd degraded: " + " ".join(line.split()[0] for line in failed.decode().splitlines() if line)
        else:
            problem = f"systemd {state or 'not answering'}"
        time.sleep(1)
    return problem


def up(
    client: docker.DockerClient,
    fleet: Fleet,
    count: int,
    inventory: Path | None,
    timeout: float = 180,
    connection: str = "ssh",
    authorized_keys: tuple[str, ...] = (),
) -> list[str]:
    require_current(client, UNIT)
    ensure_network(client, fleet)
    names = fleet.unit_names(count)
    for index, name in enumerate(names, start=1):
        _ensure_volume(client, fleet, name)
        start_unit(client, fleet, name, index)
    _ensure_volume(client, fleet, fleet.source)
    start_source(client, fleet)
    containers = [*names, fleet.source]
    with ThreadPoolExecutor(max_workers=min(16, len(containers))) as pool:
        problems = dict(zip(containers, pool.map(lambda n: wait_ready(client, n, timeout), containers), strict=True))
    bad = {name: problem for name, problem in problems.items() if problem}
    if bad:
        raise SystemExit("fleet up: units not ready:\n" + "\n".join(f"  {n}: {p}" for n, p in bad.items()))
    # Every unit is reachable over SSH whichever connection the inventory names.
    keys = (ssh.ensure_key(), *authorized_keys)
    addresses = {name: address(client.containers.get(name), fleet) for name in containers}
    ssh.record_host_keys({addresses[name]: ssh.authorize(client.containers.get(name), keys) for name in containers})
    ssh.write_config(fleet.name, addresses)
    write_sim_vars()
    if inventory is not None:
        write_inventory(inventory, fleet, names, addresses if connection == "ssh" else None)
    return names


def address(container: Container, fleet: Fleet) -> str:
    """A unit's address on its fleet's network, which this machine reaches."""
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][fleet.network]["IPAddress"]


def sim_vars(existing: dict) -> dict:
    """The generated variables: secrets kept from `existing` where present, new ones made otherwise."""
    made = {
        "postgres_password": secrets.token_urlsafe(24),
        "litellm_proxy_master_key": "sk-" + secrets.token_hex(24),
        "litellm_proxy_salt_key": secrets.token_urlsafe(32),
        "open_webui_secret_key": secrets.token_urlsafe(32),
        "metrics_proxy_token": secrets.token_urlsafe(32),
        "thorfleet_fleet_token": secrets.token_urlsafe(32),
    }
    kept = {key: existing.get(key) or value for key, value in made.items()}
    return {"container_images_archive_dir": str(ARCHIVE_DIR), **kept}


def write_sim_vars(path: Path = SIM_VARS) -> None:
    existing = yaml.safe_load(path.read_text(encoding="utf-8")) or {} if path.exists() else {}
    wanted = sim_vars(existing)
    if wanted != existing:
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "---\n# Written by `sim/fleet up` for every simulated fleet of this checkout; not committed.\n"
        path.write_text(header + yaml.safe_dump(wanted, sort_keys=False), encoding="utf-8")
        path.chmod(0o600)


def _ensure_volume(client: docker.DockerClient, fleet: Fleet, unit: str) -> None:
    # Created up front so that it carries the fleet's labels and `down` can find it.
    try:
        client.volumes.get(volume_name(unit))
    except docker.errors.NotFound:
        client.volumes.create(volume_name(unit), labels=fleet.labels)


def inventory_data(fleet: Fleet, names: list[str], addresses: dict[str, str] | None = None) -> dict:
    """The fleet's inventory: over SSH to each unit's fleet address when `addresses` is given, else docker exec."""
    reach = ssh.inventory_vars() if addresses is not None else {"ansible_connection": "community.docker.docker"}

    def host_vars(container: str, host: str) -> dict:
        if addresses is not None:
            return {"ansible_host": addresses[container]}
        return {} if host == container else {"ansible_host": container}

    common = {**reach, "ansible_python_interpreter": "/usr/bin/python3"}
    hosts = {f"thor-{index:02d}": host_vars(name, f"thor-{index:02d}") for index, name in enumerate(names, start=1)}
    return {
        "all": {
            "hosts": {SOURCE_HOST: {**host_vars(fleet.source, SOURCE_HOST), **common}},
            "children": {
                INVENTORY_GROUP: {
                    "hosts": hosts,
                    "vars": {**common, "thorfleet_sim_fleet": fleet.name},
                }
            },
        }
    }


INVENTORY_HEADER = "---\n# Written by `sim/fleet up`"


def inventory_is_ours(path: Path) -> bool:
    """Whether `path` is absent or an inventory `sim/fleet up` wrote: a fleet named after one of the collection's own
    inventories (the workshop scenario's, and inventories/workshop/hosts.yml) must neither overwrite nor remove it."""
    try:
        return path.read_text(encoding="utf-8").startswith(INVENTORY_HEADER)
    except FileNotFoundError:
        return True


def write_inventory(path: Path, fleet: Fleet, names: list[str], addresses: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"{INVENTORY_HEADER}: the simulated Thor units of fleet {fleet.name!r}.\n"
    data = inventory_data(fleet, names, addresses)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def down(client: docker.DockerClient, fleet_name: str) -> dict[str, int]:
    """Remove a fleet's containers, volumes and network; return what was removed."""
    selector = {"label": f"{LABEL_FLEET}={fleet_name}"}
    removed = {"containers": 0, "volumes": 0, "networks": 0}
    for container in client.containers.list(all=True, filters=selector):
        container.remove(force=True, v=True)
        removed["containers"] += 1
    for volume in client.volumes.list(filters=selector):
        volume.remove(force=True)
        removed["volumes"] += 1
    for network in client.networks.list(filters=selector):
        network.remove()
        removed["networks"] += 1
    ssh.config_path(fleet_name).unlink(missing_ok=True)
    return removed


def fleets(client: docker.DockerClient, ephemeral_only: bool = False) -> list[str]:
    """Names of the fleets that have any labelled container, volume or network left."""
    selector = {"label": LABEL_EPHEMERAL if ephemeral_only else LABEL_FLEET}
    items = [
        *client.containers.list(all=True, filters=selector),
        *client.volumes.list(filters=selector),
        *client.networks.list(filters=selector),
    ]
    return sorted({_labels(item)[LABEL_FLEET] for item in items})


def _labels(item) -> dict[str, str]:
    return item.labels if isinstance(item, Container) else item.attrs.get("Labels") or {}


def status(client: docker.DockerClient) -> list[dict[str, str]]:
    rows = []
    for container in client.containers.list(all=True, filters={"label": LABEL_FLEET}):
        row = {
            "fleet": container.labels.get(LABEL_FLEET, ""),
            "unit": container.name,
            "container": container.status,
            "systemd": "-",
            "engine": "-",
            "default runtime": "-",
        }
        if container.status == "running":
            _, out = container.exec_run(["systemctl", "is-system-running"])
            row["systemd"] = out.decode().strip()
            code, out = container.exec_run(["docker", "info", "--format", "{{.ServerVersion}} {{.DefaultRuntime}}"])
            if code == 0:
                row["engine"], row["default runtime"] = out.decode().split()
            else:
                row["engine"] = "down"
        rows.append(row)
    return sorted(rows, key=lambda r: (r["fleet"], r["unit"]))
