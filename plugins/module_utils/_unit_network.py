# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""The unit's private network and how one container stands with it: the engine of the unit_network module (one
round trip where docker_network and docker_container_info took two)."""

from __future__ import annotations


def converge(engine, network, container, check_mode):
    """Make `network` (a bridge, Docker's defaults, as docker_network makes it) when it is missing, and report
    the container `container`: {changed, network_id, exists, container, network_new, network_stale}.

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
    info = engine.inspect("containers", container)
    attached = ((info or {}).get("NetworkSettings") or {}).get("Networks") or {}
    # Detached counts as stale too: in check mode the network a run would make has no id yet.
    stale = info is not None and ((attached.get(network) or {}).get("NetworkID") or "detached") != network_id
    return dict(
        changed=changed,
        network_id=network_id,
        exists=info is not None,
        container=info,
        network_new=check_mode and changed,
        network_stale=stale,
    )
