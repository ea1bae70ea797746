#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports

from __future__ import annotations

DOCUMENTATION = r"""
---
module: unit_network
short_description: The unit's private Docker network, made when missing, and how one container stands with it
version_added: 0.2.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - thorfleet.llm.docker_engine
description:
  - Makes the Docker network O(network) when it does not exist (a bridge with Docker's defaults, as
    C(community.docker.docker_network) makes it from a name alone), and returns the container O(container) as
    C(docker inspect) shows it, in one call on the unit.
  - Reports whether the container stands on the network as it is now (RV(network_stale)). A container left on a
    network that was removed and made anew, or detached from it, must be recreated, since it cannot even start.
  - Talks to the Docker engine over its Unix socket O(docker_socket).
attributes:
  check_mode:
    support: full
    details:
      - Makes no network; reports a missing one as a change and sets RV(network_new).
  diff_mode:
    support: none
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
"""

EXAMPLES = r"""
- name: The unit's private network, and the PostgreSQL container as it is now
  thorfleet.llm.unit_network:
    network: infra-thor
    container: ai-postgres
  register: postgres_stands

- name: Run PostgreSQL, recreated when it stands on a network that is gone
  community.docker.docker_container:
    name: ai-postgres
    image: postgres:17.6
    networks: "{{ omit if postgres_stands.network_new else [{'name': 'infra-thor'}] }}"
    recreate: "{{ postgres_stands.network_stale }}"
"""

RETURN = r"""
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
      null when it does not exist. It holds the container's environment, secrets included.
  type: dict
  returned: always
network_new:
  description: Check mode and the network does not exist yet, so that no container can name it.
  type: bool
  returned: always
network_stale:
  description: The container exists but is not attached to the network as it is now (or the network is new).
  type: bool
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.thorfleet.llm.plugins.module_utils._docker_engine import ENGINE_OPTIONS, DockerError, Engine
from ansible_collections.thorfleet.llm.plugins.module_utils._unit_network import converge


def argument_spec():
    return dict(
        network=dict(type="str", required=True),
        container=dict(type="str", required=True),
        **ENGINE_OPTIONS,
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        result = converge(Engine(params["docker_socket"]), params["network"], params["container"], module.check_mode)
    except DockerError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
