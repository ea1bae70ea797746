# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""cache_swarm: wait for a unit's aria2 to hold the whole torrent, saying how it goes; documented in
plugins/modules/cache_swarm.py.

An action plugin, so that it can print a line at each poll while it waits (a module speaks only when it ends). Each
poll is one short command on the unit, a request to aria2's RPC on loopback; the accounting is _cache_torrent's
Progress, tested on its own."""

from __future__ import annotations

import json
import os
import shlex
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible_collections.thorfleet.llm.plugins.module_utils._cache_torrent import Progress

ARGUMENT_SPEC = {
    "rpc_port": {"type": "int", "default": 6800},
    "secret": {"type": "str", "required": True, "no_log": True},
    "source_ip": {"type": "str", "required": True},
    "interface": {"type": "str", "required": True},
    "interval": {"type": "float", "default": 2.0},
    "stall_timeout": {"type": "int", "default": 300},
    "progress_dir": {"type": "path"},
    "swarm_every": {"type": "float", "default": 10.0},
}
# Runs on the unit: POST stdin to aria2's RPC on loopback port argv[1]; print its answer and what interface argv[2]
# has received.
CLIENT = (
    "import sys, json, http.client as h; c = h.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=30);"
    " c.request('POST', '/jsonrpc', sys.stdin.buffer.read(), {'Content-Type': 'application/json'});"
    " r = c.getresponse(); a = r.read().decode();"
    " f = open('/sys/class/net/%s/statistics/rx_bytes' % sys.argv[2]);"
    " sys.stdout.write(json.dumps({'answer': a, 'rx': int(f.read())})); sys.exit(r.status != 200)"
)
FIELDS = ["gid", "completedLength", "totalLength", "downloadSpeed", "uploadLength", "verifiedLength"]
FIELDS.append("verifyIntegrityPending")

display = Display()


def swarm_line(units):
    """The swarm's total from every watched unit's figures (Progress.figures())."""
    done = sum(unit["done"] for unit in units)
    total = sum(unit["total"] for unit in units)
    complete = sum(1 for unit in units if unit["total"] and unit["done"] == unit["total"])
    return (
        f"swarm: {complete} of {len(units)} units complete, {done / 1e6:.1f} of {total / 1e6:.1f} MB,"
        f" {sum(unit['speed'] for unit in units) / 1e6:.1f} MB/s; from the source"
        f" {sum(unit['from_source'] for unit in units) / 1e6:.1f} MB, from peers"
        f" {sum(unit['from_peers'] for unit in units) / 1e6:.1f} MB"
    )


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def _rpc(self, args, calls):
        """aria2's answers to `calls` ([method, params] each, the secret first in params), in one request, and the
        bytes the unit's interface has received."""
        body = {
            "jsonrpc": "2.0",
            "id": "thorfleet",
            "method": "system.multicall",
            "params": [[{"methodName": method, "params": params} for method, params in calls]],
        }
        # A module per poll (uri) costs a Python start with Ansible's module code on the unit and the controller's
        # packing of it: with sixteen simulated units polled every two seconds that held this machine's two cores.
        # A one-line client over the connection already open costs a bare Python start. The secret goes on stdin,
        # not in the unit's process list.
        answer = self._low_level_execute_command(
            f"python3 -c {shlex.quote(CLIENT)} {args['rpc_port']} {shlex.quote(args['interface'])}",
            in_data=json.dumps(body),
            sudoable=False,
        )
        if answer["rc"] != 0:
            why = (answer["stderr"] or answer["stdout"])[-300:]
            raise AnsibleActionFail(f"aria2 on this unit did not answer on 127.0.0.1:{args['rpc_port']}: {why}")
        reply = json.loads(answer["stdout"])
        # A failed call is a {code, message} where its answer was.
        results = json.loads(reply["answer"])["result"]
        for result in results:
            if isinstance(result, dict) and "code" in result:
                raise AnsibleActionFail(f"aria2 refused a call: {result.get('message')}")
        return [result[0] for result in results], reply["rx"]

    def _swarm(self, args, host, progress):
        """Leave this unit's figures in progress_dir for the others, and print the swarm's total when nobody has for
        swarm_every seconds, or when this unit completes. Each unit's wait runs in its own worker process: a folder
        on the controller is what they share (a race prints the total twice, at worst)."""
        folder = args["progress_dir"]
        os.makedirs(folder, exist_ok=True)
        mine = os.path.join(folder, f"{host}.json")
        with open(mine + ".part", "w", encoding="utf-8") as f:
            json.dump(progress.figures(), f)
        os.replace(mine + ".part", mine)
        stamp = os.path.join(folder, "shown")
        try:
            # Also when this unit completes: the line that says the last one has is the swarm's end.
            if time.time() - os.path.getmtime(stamp) < args["swarm_every"] and not progress.complete:
                return
        except FileNotFoundError:
            pass
        with open(stamp, "w", encoding="utf-8"):
            pass
        units = []
        for entry in sorted(os.listdir(folder)):
            if entry.endswith(".json"):
                with open(os.path.join(folder, entry), encoding="utf-8") as f:
                    units.append(json.load(f))
        display.display(swarm_line(units))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(ARGUMENT_SPEC)[1]
        host = task_vars.get("inventory_hostname", "unit")
        progress = Progress(args["source_ip"])
        # A unit the swarm could not fill is not failed here: the play verifies it and it falls back to the rounds.
        try:
            self._watch(args, host, progress)
        except AnsibleActionFail as e:
            display.warning(f"{host}: {e}; it is verified, and pulls by rsync what it still lacks")
            result["msg"] = str(e)
        result.update(changed=False, **progress.result())
        return result

    def _watch(self, args, host, progress):
        token = f"token:{args['secret']}"
        moved_at = time.monotonic()
        last_done = -1
        gid = None
        shown = None
        while True:
            if gid is None:
                active = self._rpc(args, [["aria2.tellActive", [token, FIELDS]]])[0][0]
                if not active:
                    raise AnsibleActionFail("aria2 on this unit has no download: its input or torrent is missing")
                gid = active[0]["gid"]
            # One request, and one call on the unit, per poll.
            (status, peers), rx = self._rpc(
                args, [["aria2.tellStatus", [token, gid, FIELDS]], ["aria2.getPeers", [token, gid]]]
            )
            now = time.monotonic()
            progress.update(now, status, peers, rx)
            # A line per unit at each tenth of the way, not per poll: sixty units print 600 lines, not thousands.
            if progress.complete or progress.tenth != shown:
                shown = progress.tenth
                display.display(progress.line(host))
            if args["progress_dir"]:
                self._swarm(args, host, progress)
            if progress.complete:
                return
            done = int(status["completedLength"])
            if done != last_done:
                moved_at, last_done = now, done
            elif now - moved_at > args["stall_timeout"]:
                raise AnsibleActionFail(
                    f"{host} received nothing for {args['stall_timeout']} s (model_cache_timeout) at "
                    f"{progress.line(host)}: the swarm cannot reach it, or nobody holds what it lacks"
                )
            time.sleep(args["interval"])
