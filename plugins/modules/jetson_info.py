#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports

from __future__ import annotations

DOCUMENTATION = r"""
---
module: jetson_info
short_description: What a Jetson unit's L4T release, Docker engine, daemon.json, NVML and power mode say, in one call
version_added: 0.2.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - thorfleet.llm.docker_engine
description:
  - Reads, in one call on the unit, what the jetson_runtime role checks before it changes anything, where a
    Docker query, a file read and one command each took a round trip of their own.
  - The text of the L4T release file O(release_file) and the machine's architecture.
  - Whether the Docker engine answers on O(docker_socket), and its default runtime.
  - O(daemon_json) parsed (an empty object when it is missing, unreadable or blank), or why it cannot be.
  - With O(nvml), the answer of C(nvidia-smi -L) (its exit code is reported, not judged).
  - With O(power_mode), the answer of C(nvpmodel -q); with O(jetson_clocks), of C(jetson_clocks --show). These must
    answer, or the module fails.
  - Changes nothing.
attributes:
  check_mode:
    support: full
    details:
      - Reads the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  daemon_json:
    description:
      - Docker's daemon configuration file.
    type: path
    default: /etc/docker/daemon.json
  release_file:
    description:
      - The file where L4T names its release.
    type: path
    default: /etc/nv_tegra_release
  nvml:
    description:
      - Ask NVML on the unit (C(nvidia-smi -L)).
    type: bool
    default: true
  power_mode:
    description:
      - Ask the power mode (C(nvpmodel -q)).
    type: bool
    default: false
  jetson_clocks:
    description:
      - Ask how the clocks are set (C(jetson_clocks --show)).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Ask the unit
  thorfleet.llm.jetson_info:
    power_mode: true
  register: unit

- name: Require the nvidia default runtime
  ansible.builtin.assert:
    that: unit.can_talk_to_docker and unit.default_runtime == 'nvidia'
"""

RETURN = r"""
can_talk_to_docker:
  description: Whether the Docker engine answered.
  type: bool
  returned: always
default_runtime:
  description: The engine's default runtime; empty when it did not answer.
  type: str
  returned: always
msg:
  description: Why the engine did not answer; empty when it did.
  type: str
  returned: always
daemon:
  description: O(daemon_json) parsed; an empty object when it is missing, unreadable or blank, null when it is not a
    JSON object (RV(daemon_error) says why).
  type: dict
  returned: always
daemon_error:
  description: Why O(daemon_json) is not a JSON object; empty when it is one (or missing).
  type: str
  returned: always
release:
  description: The text of O(release_file); null when it is missing or unreadable.
  type: str
  returned: always
architecture:
  description: The machine's architecture as the kernel names it (C(aarch64) on a Thor unit).
  type: str
  returned: always
nvml:
  description: C(nvidia-smi -L)'s C(rc), C(stdout) and C(stderr) (rc 127 when it is missing); null without O(nvml).
  type: dict
  returned: always
nvpmodel:
  description: What C(nvpmodel -q) printed; null without O(power_mode).
  type: str
  returned: always
clocks:
  description: What C(jetson_clocks --show) printed; null without O(jetson_clocks).
  type: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.thorfleet.llm.plugins.module_utils._docker_engine import ENGINE_OPTIONS, Engine
from ansible_collections.thorfleet.llm.plugins.module_utils._jetson_info import read


def argument_spec():
    return dict(
        daemon_json=dict(type="path", default="/etc/docker/daemon.json"),
        release_file=dict(type="path", default="/etc/nv_tegra_release"),
        nvml=dict(type="bool", default=True),
        power_mode=dict(type="bool", default=False),
        jetson_clocks=dict(type="bool", default=False),
        **ENGINE_OPTIONS,
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params

    def run(argv):
        path = module.get_bin_path(argv[0])
        return (None, "", "") if path is None else module.run_command([path, *argv[1:]])

    try:
        unit = read(
            Engine(params["docker_socket"]),
            run,
            params["daemon_json"],
            params["release_file"],
            nvml=params["nvml"],
            power_mode=params["power_mode"],
            jetson_clocks=params["jetson_clocks"],
        )
    except RuntimeError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **unit)


if __name__ == "__main__":
    main()
