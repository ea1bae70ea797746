#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports

from __future__ import annotations

DOCUMENTATION = r"""
---
module: container_previous
short_description: Keep a service's container, stopped, while its replacement is gated; put it back, or drop it
version_added: 0.2.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - thorfleet.llm.docker_engine
description:
  - With O(state=kept), stops the container O(name) within O(stop_timeout) and renames it C(NAME-previous), and
    copies each of O(files) to C(PATH-previous), so that a new container can be made under O(name). The kept
    container is the record of what ran, exactly as Docker holds it (image, command, environment, mounts,
    labels), so a rollback cannot apply the refused settings again.
  - With O(state=kept), moves each of O(folders) to C(PATH-previous) and makes an empty folder of the same mode and
    owner in its place (PostgreSQL's data folder, which a server of another major version must start without). It
    refuses where C(PATH-previous) exists already, since that may hold the only copy of data.
  - With O(state=restored), removes the container O(name) (the replacement that failed) and the folders it wrote,
    puts the kept folders back, renames C(NAME-previous) back to O(name), puts the files' kept copies back and starts
    it.
  - With O(state=dropped), removes C(NAME-previous), the files' kept copies and the kept folders, once the
    replacement passed its gate.
  - Each state does nothing where there is nothing to do (no container to keep, nothing kept to put back or drop).
    A C(NAME-previous) left by a run that was cut off stays the record until the next O(state=kept) or
    O(state=dropped).
  - Talks to the Docker engine over its Unix socket O(docker_socket).
attributes:
  check_mode:
    support: full
    details:
      - Changes nothing; reports what would change, and the diff shows it.
  diff_mode:
    support: full
    details:
      - The container, the kept one and each file's kept copy, before and after.
  platform:
    platforms: posix
options:
  name:
    description:
      - The service's container name.
    type: str
    required: true
  state:
    description:
      - V(kept), V(restored) or V(dropped), as described above.
    type: str
    choices: [kept, restored, dropped]
    required: true
  files:
    description:
      - Files the container reads (its configuration), kept and put back with it.
    type: list
    elements: path
    default: []
  folders:
    description:
      - Folders the container writes that its replacement must start without, moved aside and back (see above).
    type: list
    elements: path
    default: []
  stop_timeout:
    description:
      - Seconds the container gets to stop (to finish what is in flight) before it is killed, with O(state=kept).
    type: int
    default: 10
"""

EXAMPLES = r"""
- name: Keep the running LiteLLM and its config while a new one is started and gated
  thorfleet.llm.container_previous:
    name: ai-litellm
    state: kept
    files: [/etc/thorfleet/litellm/config.yaml]
    stop_timeout: 30

- name: The new one failed its gate, put the kept one back
  thorfleet.llm.container_previous:
    name: ai-litellm
    state: restored
    files: [/etc/thorfleet/litellm/config.yaml]

- name: Keep PostgreSQL and its data folder while a server of the next major version starts on an empty one
  thorfleet.llm.container_previous:
    name: ai-postgres
    state: kept
    folders: [/var/lib/thorfleet/postgres]
    stop_timeout: 60

- name: The new one passed its gate, drop the kept one
  thorfleet.llm.container_previous:
    name: ai-litellm
    state: dropped
    files: [/etc/thorfleet/litellm/config.yaml]
"""

RETURN = r"""
steps:
  description: What was done (would be, in check mode), in order, one line each.
  type: list
  elements: str
  returned: always
  sample: ["stop ai-litellm", "rename ai-litellm ai-litellm-previous", "keep /etc/thorfleet/litellm/config.yaml"]
previous:
  description: Whether C(NAME-previous) stands once the state is reached.
  type: bool
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.thorfleet.llm.plugins.module_utils._container_previous import (
    act,
    applied,
    plan,
    read,
    render,
    standing,
)
from ansible_collections.thorfleet.llm.plugins.module_utils._docker_engine import ENGINE_OPTIONS, DockerError, Engine


def argument_spec():
    return dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["kept", "restored", "dropped"], required=True),
        files=dict(type="list", elements="path", default=[]),
        folders=dict(type="list", elements="path", default=[]),
        stop_timeout=dict(type="int", default=10),
        **ENGINE_OPTIONS,
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    # A stop may take its whole timeout; the engine answers after it.
    engine = Engine(params["docker_socket"], timeout=params["stop_timeout"] + 60)
    try:
        found = read(engine, params["name"], params["files"], params["folders"])
        steps = plan(found, params["name"], params["state"], params["files"], params["folders"])
        if steps and not module.check_mode:
            act(engine, steps, params["stop_timeout"])
    except (DockerError, OSError) as exc:
        module.fail_json(msg=f"{params['name']}: {exc}")
    before = standing(found)
    reached = applied(before, steps, params["name"])
    module.exit_json(
        changed=bool(steps),
        steps=[" ".join([verb, *(arg if isinstance(arg, tuple) else [arg])]) for verb, arg in steps],
        previous=reached["previous"] != "absent",
        diff=dict(before=render(before, params["name"]), after=render(reached, params["name"])),
    )


if __name__ == "__main__":
    main()
