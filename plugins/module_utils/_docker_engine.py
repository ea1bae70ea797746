# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""The few calls of the Docker Engine API that the collection's read-mostly modules make (unit_service,
jetson_info), over the engine's Unix socket: one module call on the unit where several community.docker
modules took one round trip each."""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import quote


class DockerError(Exception):
    """The engine did not answer, or answered with an error."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


# The argument spec of the option every module on this engine takes (doc fragment thorfleet.llm.docker_engine).
ENGINE_OPTIONS = {"docker_socket": {"type": "path", "default": "/var/run/docker.sock"}}


class Engine:
    """The few calls of the Engine API this needs; `request` returns (status, decoded JSON or None)."""

    def __init__(self, socket_path, timeout=60):
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method, path, body=None):
        connection = _UnixConnection(self.socket_path, self.timeout)
        try:
            payload = None if body is None else json.dumps(body)
            headers = {} if body is None else {"Content-Type": "application/json"}
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            text = response.read()
        except OSError as exc:
            raise DockerError(f"cannot talk to the Docker engine at {self.socket_path}: {exc}") from exc
        finally:
            connection.close()
        data = json.loads(text) if text else None
        if response.status >= 400 and response.status != 404:
            message = data.get("message") if isinstance(data, dict) else text
            raise DockerError(f"Docker engine: {method} {path}: HTTP {response.status}: {message}")
        return response.status, data

    def inspect(self, kind, name):
        """A network's, container's or image's inspection, None when there is none by that name."""
        # The API's one asymmetry here: /containers/NAME/json and /images/NAME/json but /networks/NAME.
        suffix = "" if kind == "networks" else "/json"
        status, data = self.request("GET", f"/{kind}/{quote(name, safe='')}{suffix}")
        return None if status == 404 else data
