# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""What a service container needs on the unit before it runs, and the container as it stands: the engine of the
unit_service module (one round trip where file, docker_network and docker_container_info took one each)."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import socket
import stat

from ansible_collections.thorfleet.llm.plugins.module_utils._container_previous import previous_name

MODE = re.compile(r"0?[0-7]{3}")


class FolderError(Exception):
    """A folder cannot be made as asked."""


def _stat(path):
    """os.stat of `path`, None when there is nothing there."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def folders(paths, mode_text, check_mode):
    """Make each folder of `paths` that is missing (with its parents) and set `mode_text` where the mode differs,
    as ansible.builtin.file with state=directory does. Returns {path: (mode before or 'absent', mode after)}, modes as
    octal strings, for each folder made or changed; nothing changes in check mode."""
    if not MODE.fullmatch(mode_text):
        raise FolderError(f"the folders' mode must be an octal string such as '0700', not {mode_text!r}")
    mode = int(mode_text, 8)
    changes = {}
    for path in paths:
        found = _stat(path)
        if found is not None and not stat.S_ISDIR(found.st_mode):
            raise FolderError(f"{path} exists and is not a folder: move it away, then run again")
        current = None if found is None else stat.S_IMODE(found.st_mode)
        if current == mode:
            continue
        changes[path] = ("absent" if current is None else f"{current:04o}", f"{mode:04o}")
        if not check_mode:
            if found is None:
                os.makedirs(path)
            os.chmod(path, mode)
    return changes


def files(paths):
    """{path: {sha256, mode, uid, gid}} of each file of `paths`, None where there is no regular file: what the caller
    compares with what it would write, so that a file that is as wanted costs no further call."""
    found = {}
    for path in paths:
        st = _stat(path)
        if st is None or not stat.S_ISREG(st.st_mode):
            found[path] = None
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        found[path] = dict(sha256=digest.hexdigest(), mode=mode, uid=st.st_uid, gid=st.st_gid)
    return found


def without_env_values(info):
    """The inspection with only the names of the container's environment: its values hold secrets (passwords, keys)
    that would otherwise have to be kept out of every output."""
    if info is None:
        return None
    config = info.get("Config") or {}
    names = [entry.partition("=")[0] for entry in config.get("Env") or []]
    return {**info, "Config": {**config, "Env": names}} if config else info


# A host address that takes in every address of its family: a port published there collides with any other.
EVERY_ADDRESS = {"", "0.0.0.0", "::"}


def _collide(one, other):
    return one == other or one in EVERY_ADDRESS or other in EVERY_ADDRESS


def _bound_elsewhere(address, port):
    """Whether a process holds `port` on `address` (a bind there fails as in use). An address this host does not
    have is not a holder: Docker will say so itself."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # A port left in TIME_WAIT by a container that just stopped is free to publish; a listening one is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address or "0.0.0.0", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def ports_held(engine, container, ports, address):
    """[{port, container, address}] for each of `ports` that `container` could not publish on `address`: another
    running container publishes it there (`container` its name), or, published by none, some other process holds
    it (`container` None). A port `container` publishes itself is its own."""
    if not ports:
        # A service that publishes nothing (PostgreSQL, vLLM) costs the engine no listing.
        return []
    running = engine.request("GET", "/containers/json")[1] or []
    published = {}
    for other in running:
        name = (other.get("Names") or ["/?"])[0].lstrip("/")
        for bound in other.get("Ports") or []:
            if bound.get("PublicPort") and bound.get("Type", "tcp") == "tcp":
                published.setdefault(bound["PublicPort"], []).append((name, bound.get("IP", "")))
    held = []
    for port in ports:
        holders = [(name, ip) for name, ip in published.get(port, []) if _collide(ip, address)]
        if any(name == container for name, _ip in holders):
            continue
        if holders:
            name, ip = holders[0]
            held.append(dict(port=port, container=name, address=f"{ip or '0.0.0.0'}:{port}"))
        elif _bound_elsewhere(address, port):
            held.append(dict(port=port, container=None, address=f"{address or '0.0.0.0'}:{port}"))
    return held


def converge(engine, network, container, image, check_mode):
    """Make `network` (a bridge, Docker's defaults, as docker_network makes it) when it is missing, and report
    the container `container`: {changed, network_id, exists, container, previous, network_new, network_stale,
    image_present}. previous: whether a kept container (container_previous) stands beside it.

    image_present: whether the image `image` is on the unit (None when no image is asked about).
    network_new: check mode and the network does not exist yet (the caller leaves `networks` out of what it
    compares). network_stale: the container exists but is not on the network as it is now (detached, or the
    network was removed and made anew): the caller recreates it, since such a container cannot even start."""
    found = engine.inspect("networks", network)
    # Docker matches a network by id prefix too; only the name counts here, as for docker_network.
    if found is not None and found.get("Name") != network:
        found = None
    changed = found is None
    if changed and not check_mode:
        engine.request("POST", "/networks/create", {"Name": network, "Driver": "bridge", "CheckDuplicate": True})
        found = engine.inspect("networks", network)
    network_id = (found or {}).get("Id", "")
    info = without_env_values(engine.inspect("containers", container))
    attached = ((info or {}).get("NetworkSettings") or {}).get("Networks") or {}
    # Detached counts as stale too: in check mode the network a run would make has no id yet.
    stale = info is not None and ((attached.get(network) or {}).get("NetworkID") or "detached") != network_id
    return dict(
        changed=changed,
        network_id=network_id,
        exists=info is not None,
        container=info,
        previous=engine.inspect("containers", previous_name(container)) is not None,
        network_new=check_mode and changed,
        network_stale=stale,
        image_present=None if image is None else engine.inspect("images", image) is not None,
    )
