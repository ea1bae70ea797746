#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports

from __future__ import annotations

DOCUMENTATION = r"""
---
module: unit_service
short_description: What a service container needs on the unit (its folders, the private network) and how it stands
version_added: 0.2.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - thorfleet.llm.docker_engine
description:
  - Makes the folders O(folders) that are missing and sets the mode O(folders_mode) on those whose mode differs (as
    C(ansible.builtin.file) with C(state=directory) does), makes the Docker network O(network) when it does not
    exist (a bridge with Docker's defaults, as C(community.docker.docker_network) makes it from a name alone), and
    returns the container O(container) as C(docker inspect) shows it, and whether the image O(image) is on the
    unit, in one call on the unit.
  - Reports whether the container stands on the network as it is now (RV(network_stale)). A container left on a
    network that was removed and made anew, or detached from it, must be recreated, since it cannot even start.
  - Reports the files O(files) (sha256, mode, owner), so that the caller writes a file only when it differs.
  - Reports each of the host ports O(ports) that the container could not publish on O(ports_address), because
    another running container publishes it there or another process holds it (RV(ports_held)).
  - Talks to the Docker engine over its Unix socket O(docker_socket).
attributes:
  check_mode:
    support: full
    details:
      - Makes no folder nor network; reports them as changes and sets RV(network_new) for a missing network.
  diff_mode:
    support: partial
    details:
      - Shows each folder made or changed with its mode before and after; a network made is not shown.
  platform:
    platforms: posix
options:
  network:
    description:
      - Name of the unit's private network.
    type: str
    required: true
  container:
    description:
      - Name of the container to report.
    type: str
    required: true
  image:
    description:
      - An image reference to look for on the unit (RV(image_present)).
    type: str
  folders:
    description:
      - Folders the container mounts, made with their parents when missing. Their owner is left as it is (a
        service may own its data folder, as PostgreSQL does).
    type: list
    elements: path
    default: []
  files:
    description:
      - Files the container reads (its configuration) to report in RV(files).
    type: list
    elements: path
    default: []
  folders_mode:
    description:
      - Mode of every folder in O(folders), an octal string.
    type: str
    default: '0755'
  ports:
    description:
      - Host ports the container publishes, to report in RV(ports_held) when something else holds them.
    type: list
    elements: int
    default: []
  ports_address:
    description:
      - The host address the container publishes O(ports) on; C(0.0.0.0) is every IPv4 address.
    type: str
    default: 0.0.0.0
"""

EXAMPLES = r"""
- name: PostgreSQL's folders, the unit's private network, and the PostgreSQL container as it is now
  thorfleet.llm.unit_service:
    folders: [/srv/postgres/data]
    folders_mode: "0700"
    network: infra-thor
    container: ai-postgres
  register: postgres_stands

- name: Run PostgreSQL, recreated when it stands on a network that is gone
  community.docker.docker_container:
    name: ai-postgres
    image: postgres:17.6
    networks: "{{ omit if postgres_stands.network_new else [{'name': 'infra-thor'}] }}"
    mounts:
      - {type: bind, source: /srv/postgres/data, target: /var/lib/postgresql/data}
    recreate: "{{ postgres_stands.network_stale }}"
"""

RETURN = r"""
folders:
  description: The folders made or whose mode was set (that would be, in check mode).
  type: list
  elements: str
  returned: always
files:
  description:
    - For each file of O(files), its C(sha256), C(mode) (an octal string), C(uid) and C(gid); null where there is
      no regular file.
  type: dict
  returned: always
  sample: {"/etc/litellm/config.yaml": {"sha256": "9f86d0...", "mode": "0600", "uid": 0, "gid": 0}}
network_id:
  description: The network's id; empty in check mode when it does not exist yet.
  type: str
  returned: always
exists:
  description: Whether the container exists.
  type: bool
  returned: always
container:
  description:
    - The container's inspection (as C(docker inspect) and C(community.docker.docker_container_info) return it),
      null when it does not exist; C(Config.Env) lists the names of its environment variables only, since their
      values hold secrets.
  type: dict
  returned: always
previous:
  description:
    - Whether C(NAME-previous) exists, a container kept by M(thorfleet.llm.container_previous) and left standing by a
      run cut off before its replacement passed its gate.
  type: bool
  returned: always
network_new:
  description: Check mode and the network does not exist yet, so that no container can name it.
  type: bool
  returned: always
network_stale:
  description: The container exists but is not attached to the network as it is now (or the network is new).
  type: bool
  returned: always
image_present:
  description: Whether the image O(image) is on the unit; null when no O(image) is given.
  type: bool
  returned: always
ports_held:
  description:
    - Each port of O(ports) held by something else on O(ports_address), with the C(container) that publishes it
      (null for a process that is not a container) and the C(address) it holds.
  type: list
  elements: dict
  returned: always
  sample: [{"port": 12434, "container": "squatter", "address": "0.0.0.0:12434"}]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.thorfleet.llm.plugins.module_utils._docker_engine import ENGINE_OPTIONS, DockerError, Engine
from ansible_collections.thorfleet.llm.plugins.module_utils._unit_service import (
    FolderError,
    converge,
    files,
    folders,
    ports_held,
)


def argument_spec():
    return dict(
        network=dict(type="str", required=True),
        container=dict(type="str", required=True),
        image=dict(type="str"),
        folders=dict(type="list", elements="path", default=[]),
        folders_mode=dict(type="str", default="0755"),
        files=dict(type="list", elements="path", default=[]),
        ports=dict(type="list", elements="int", default=[]),
        ports_address=dict(type="str", default="0.0.0.0"),
        **ENGINE_OPTIONS,
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        made = folders(params["folders"], params["folders_mode"], module.check_mode)
        engine = Engine(params["docker_socket"])
        result = converge(engine, params["network"], params["container"], params["image"], module.check_mode)
        # Read after the folders are made: a file's folder may be among them.
        result.update(folders=list(made), files=files(params["files"]), changed=result["changed"] or bool(made))
        result["ports_held"] = ports_held(engine, params["container"], params["ports"], params["ports_address"])
    except (FolderError, DockerError, OSError) as exc:
        module.fail_json(msg=str(exc))
    if made:
        # Folders only: the network is the same for every service and shows in the task's change.
        result["diff"] = dict(
            before="".join(f"{path}: {before}\n" for path, (before, _after) in made.items()),
            after="".join(f"{path}: {after}\n" for path, (_before, after) in made.items()),
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
