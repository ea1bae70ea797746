"""cache_swarm: the wait on a unit's aria2, over a stand-in for the commands it runs on the unit (the role's
torrent run uses the real aria2 on simulated units)."""

from __future__ import annotations

import json
import re
from unittest.mock import MagicMock

from ansible_collections.thorfleet.llm.plugins.action import cache_swarm
from ansible_collections.thorfleet.llm.plugins.modules import cache_swarm as cache_swarm_doc

from ..docs import assert_documented


def test_documented_as_specified():
    assert_documented(cache_swarm_doc.DOCUMENTATION, cache_swarm.ARGUMENT_SPEC)


def action(answers):
    """The action over `answers`: one list of multicall results per poll, in order; records the calls. The unit's
    interface receives a GB between two polls, more than any answer here moves."""
    args = {"secret": "s3", "source_ip": "10.0.0.1", "interface": "eth0", "interval": 0, "stall_timeout": 0}
    task = MagicMock(args=args, async_val=0)
    connection = MagicMock()
    connection._shell.tmpdir = None
    plugin = cache_swarm.ActionModule(task, connection, MagicMock(), MagicMock(), MagicMock())
    plugin.calls = []

    def execute(cmd, in_data, sudoable):
        assert cmd.startswith("python3 -c ") and cmd.endswith(" 6800 eth0") and not sudoable
        plugin.calls.append(json.loads(in_data)["params"][0])
        answer = json.dumps({"result": [[result] for result in answers.pop(0)]})
        return {"rc": 0, "stdout": json.dumps({"answer": answer, "rx": 10**9 * len(plugin.calls)}), "stderr": ""}

    plugin._low_level_execute_command = execute
    return plugin


def status(done, total=1000):
    return {
        "gid": "g1",
        "completedLength": str(done),
        "totalLength": str(total),
        "downloadSpeed": "5",
        "uploadLength": "0",
    }


def test_it_polls_until_the_unit_holds_the_whole_torrent():
    peers = [{"ip": "10.0.0.1", "downloadSpeed": "1"}, {"ip": "10.0.0.3", "downloadSpeed": "3"}]
    plugin = action([[[status(0)]], [status(0), []], [status(400), peers], [status(1000), peers]])
    result = plugin.run(task_vars={"inventory_hostname": "thor-02"})
    assert (result["complete"], result["bytes"], result["from_source"], result["from_peers"]) == (True, 1000, 250, 750)
    assert [call["methodName"] for call in plugin.calls[1]] == ["aria2.tellStatus", "aria2.getPeers"]
    assert plugin.calls[1][0]["params"][:2] == ["token:s3", "g1"]


def test_a_unit_that_receives_nothing_is_left_to_the_rounds_naming_where_it_stands():
    plugin = action([[[status(100)]], [status(100), []], [status(100), []]])
    result = plugin.run(task_vars={"inventory_hostname": "thor-02"})
    assert not result.get("failed") and not result["complete"]
    assert re.search(r"thor-02 received nothing for 0 s .* 10\.0% of", result["msg"])


def test_aria2_without_a_download_is_named():
    result = action([[[]]]).run(task_vars={})
    assert "has no download" in result["msg"] and not result["complete"]


def test_the_swarms_total_is_printed_from_every_watched_units_figures(tmp_path, monkeypatch):
    mb = 1000000
    (tmp_path / "thor-01.json").write_text(
        json.dumps({"done": mb, "total": mb, "speed": 0, "from_source": 600000, "from_peers": 400000})
    )
    lines = []
    monkeypatch.setattr(cache_swarm.display, "display", lambda msg, **_kw: lines.append(msg))
    peers = [{"ip": "10.0.0.1", "downloadSpeed": "1"}]
    polls = [[status(0, mb), []], [status(mb // 2, mb), peers], [status(mb * 52 // 100, mb), peers]]
    polls.append([status(mb, mb), peers])
    plugin = action([[[status(0, mb)]], *polls])
    plugin._task.args.update(progress_dir=str(tmp_path), swarm_every=3600)
    plugin.run(task_vars={"inventory_hostname": "thor-02"})
    # The first poll, then none for swarm_every, but the one at which this unit completes.
    assert [line for line in lines if line.startswith("swarm:")] == [
        "swarm: 1 of 2 units complete, 1.0 of 2.0 MB, 0.0 MB/s; from the source 0.6 MB, from peers 0.4 MB",
        "swarm: 2 of 2 units complete, 2.0 of 2.0 MB, 0.0 MB/s; from the source 1.6 MB, from peers 0.4 MB",
    ]
    # Per unit: a line at 0%, 50% and 100%, not one per poll.
    mine = [line.split("%")[0] for line in lines if line.startswith("thor-02")]
    assert mine == ["thor-02:   0.0", "thor-02:  50.0", "thor-02: 100.0"]


def test_the_client_it_runs_on_the_unit_posts_stdin_and_prints_the_answer_and_what_the_interface_received(tmp_path):
    """CLIENT itself, against a real HTTP server on loopback, reading loopback's counter."""
    import http.server
    import subprocess
    import threading

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json-rpc")
            self.end_headers()
            answer = {"got": json.loads(body), "path": self.path, "type": self.headers["Content-Type"]}
            self.wfile.write(json.dumps(answer).encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.handle_request, daemon=True).start()
    port = str(server.server_port)
    out = subprocess.run(
        ["python3", "-c", cache_swarm.CLIENT, port, "lo"], input='{"id": 1}', capture_output=True, text=True, check=True
    )
    server.server_close()
    reply = json.loads(out.stdout)
    assert json.loads(reply["answer"]) == {"got": {"id": 1}, "path": "/jsonrpc", "type": "application/json"}
    assert reply["rx"] > len('{"id": 1}')
