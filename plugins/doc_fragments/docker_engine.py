# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""The option of the modules that talk to the unit's Docker engine themselves (module_utils/_docker_engine.py)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  docker_socket:
    description:
      - The Docker engine's Unix socket.
    type: path
    default: /var/run/docker.sock
"""
