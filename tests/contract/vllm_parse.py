"""Check `vllm serve` command lines with vLLM's own argument parser, many in one run.

Runs INSIDE the venv that tests/contract/vllm_venv.sh builds (the pinned vLLM,
CPU torch), or under any python that imports a `vllm` (vllm-sim's package on
PYTHONPATH). Each check is roles/vllm_server/files/vllm_check.py's, the script
the collection runs on a unit; this runs many argvs after one import of vLLM
(~10 s). Reads a JSON list of argv lists from stdin -- each argv is what
follows `vllm serve`, i.e. [MODEL, "--flag", "value", ...] -- and writes a JSON
list of results, one per argv, to stdout:

    {"ok": bool, "error": str, "stage": str, "warnings": [str, ...]}

`stage` names the step that rejected the argv ("" when ok): vllm_check.py's
stages (parse, validate_parsed_serve_args, validate_api_server_args,
reasoning_parser, engine_args). `warnings` are what vLLM logged at WARNING.

`python vllm_parse.py --info` prints {"vllm": version, "parser": module,
"options": every option string of `vllm serve`} instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "vllm_server" / "files"))
import vllm_check


class _Capture(logging.Handler):
    """Collects vLLM's warnings (e.g. "argument 'x' is deprecated") per argv."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.records.append(record.getMessage())


def main() -> int:
    # vLLM logs to stdout; keep the real stdout for our JSON alone.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    vllm_check.no_network()
    parser, serve = vllm_check.serve_parser()
    if sys.argv[1:] == ["--info"]:
        (subcommands,) = parser._subparsers._group_actions
        options = sorted(subcommands.choices["serve"]._option_string_actions)
        version = sys.modules["vllm"].__version__  # imported by now; a stand-in has no package metadata
        json.dump({"vllm": version, "parser": type(serve).__module__, "options": options}, out)
        out.write("\n")
        return 0

    argvs = json.load(sys.stdin)
    if not isinstance(argvs, list) or not all(
        isinstance(a, list) and all(isinstance(s, str) for s in a) for a in argvs
    ):
        print("stdin must be a JSON list of lists of strings", file=sys.stderr)
        return 2

    capture = _Capture()
    logging.getLogger("vllm").addHandler(capture)
    results = []
    for argv in argvs:
        capture.records.clear()
        stage, error = vllm_check.check(parser, serve, argv)
        results.append({"ok": not error, "error": error, "stage": stage, "warnings": list(capture.records)})
    json.dump(results, out, indent=1)
    out.write("\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
