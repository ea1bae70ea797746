#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# The action plugin of the same name (plugins/action/cache_swarm.py) does the work; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cache_swarm
short_description: Wait until a unit's aria2 holds the whole model cache torrent, printing its progress
version_added: 0.2.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
description:
  - Polls the unit's aria2 over its RPC on loopback every O(interval) seconds, with one short C(python3) command
    on the unit over Ansible's open connection (no module run per poll), and prints a line for the unit at each
    tenth of the way (percent, speed, bytes from the source and from the other units, bytes sent to them), until
    the download is complete.
  - aria2 reports each peer's speed, not the bytes it sent; the bytes received between two polls are shared between
    the source and the other units in proportion to those speeds, so RV(from_source) and RV(from_peers) are close
    estimates whose sum is exact.
  - Does not fail a unit the swarm leaves incomplete (nothing received for O(stall_timeout) seconds, or aria2 not
    answering). It warns, and returns RV(complete) false with RV(msg), for the play to verify the unit and fill it
    otherwise.
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: none
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  rpc_port:
    description: aria2's RPC port on the unit's loopback.
    type: int
    default: 6800
  secret:
    description: aria2's RPC secret.
    type: str
    required: true
  source_ip:
    description: The cache source's address on the fleet network, as the unit's peers list shows it.
    type: str
    required: true
  interface:
    description:
      - The unit's interface on the fleet network. What it has received bounds what aria2 counts as arrived between
        two polls, so that what aria2's check found on disk is not counted as received.
    type: str
    required: true
  interval:
    description: Seconds between polls.
    type: float
    default: 2.0
  stall_timeout:
    description: Seconds without a byte received after which the swarm is given up for this unit.
    type: int
    default: 300
  progress_dir:
    description:
      - A folder on the controller where each unit's wait leaves its figures, so that the swarm's total (units
        complete, bytes, speed, from the source and from peers) is printed every O(swarm_every) seconds and when a
        unit completes.
      - Emptied by the caller before the swarm starts; no total is printed without it.
    type: path
  swarm_every:
    description: Seconds between two lines of the swarm's total.
    type: float
    default: 10.0
"""

EXAMPLES = r"""
- name: Wait for the unit's download, with its progress
  thorfleet.llm.cache_swarm:
    secret: "{{ aria2_secret }}"
    source_ip: 10.0.0.1
    interface: eth0
"""

RETURN = r"""
complete:
  description: Whether the unit holds the whole torrent.
  type: bool
  returned: always
bytes:
  description:
    - Bytes the unit received while it was watched, less what aria2's check found it held already.
    - aria2 reports the two as one figure; what arrived between two polls is taken as at most what O(interface)
      received in that time.
  type: int
  returned: always
seconds:
  description: Seconds from the first poll to the last.
  type: float
  returned: always
from_source:
  description: Of RV(bytes), those from the cache source (estimated, see above).
  type: int
  returned: always
from_peers:
  description: Of RV(bytes), those from the other units (estimated, see above).
  type: int
  returned: always
uploaded:
  description: Bytes the unit sent to the others.
  type: int
  returned: always
msg:
  description: Why the swarm left the unit incomplete.
  type: str
  returned: when RV(complete) is false
"""
