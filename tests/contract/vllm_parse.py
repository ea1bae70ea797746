"""Check `vllm serve` command lines with vLLM's own argument parser.

Runs INSIDE the venv that tests/contract/vllm_venv.sh builds (the pinned vLLM,
CPU torch). Reads a JSON list of argv lists from stdin -- each argv is what
follows `vllm serve`, i.e. [MODEL, "--flag", "value", ...] -- and writes a JSON
list of results, one per argv, to stdout:

    {"ok": bool, "error": str, "stage": str, "warnings": [str, ...]}

`stage` names the step that rejected the argv ("" when ok). The steps are the
ones `vllm serve` runs before it touches a model or an accelerator, in order:

  parse                      vllm's CLI main(): FlexibleArgumentParser with the
                             `serve` subparser, `parse_args(["serve", *argv])`.
                             This includes the serve-specific argv rewriting
                             (--model, --served-model-name checks), dotted JSON
                             args (--compilation-config.mode 3), and the
                             per-flag types: ints, choices, and pydantic
                             validation of config dataclasses given as JSON.
  validate_parsed_serve_args ServeSubcommand.validate(), called by main().
  validate_api_server_args   setup_server(): tool/reasoning parser names (the
                             tool parser is only checked with
                             --enable-auto-tool-choice, as vLLM does).
  reasoning_parser           --reasoning-parser is a registered name. vLLM
                             itself looks it up only in create_engine_config /
                             engine start-up (after reading the model's
                             config), failing the same way; checked here
                             ahead of time because it needs no model.
  engine_args                AsyncEngineArgs.from_cli_args(): the engine-args
                             dataclass and its __post_init__ (dict configs to
                             config objects, quantization config), which
                             build_async_engine_client runs before
                             create_engine_config.

Not run: create_engine_config() and anything after it (reads the model's HF
config, picks devices), configure_logging_from_args() (would read a
--log-config-file that lives on the unit), the data-parallel/headless
api-server-count checks inlined in ServeSubcommand.cmd().

`python vllm_parse.py --info` prints {"vllm": version, "parser": module} instead.
Nothing is downloaded: HF_HUB_OFFLINE=1, no model is resolved, and every
non-Unix socket connect() is refused in this process.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def _no_network() -> None:
    """Refuse every non-local socket connection: this check must never download."""
    import socket

    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family != socket.AF_UNIX:
            raise OSError(f"vllm_parse.py: network access refused ({address!r})")
        return real_connect(self, address)

    socket.socket.connect = connect


class _Capture(logging.Handler):
    """Collects vLLM's warnings (e.g. "argument 'x' is deprecated") per argv."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.records.append(record.getMessage())


def _import_vllm():
    """Import what `vllm serve` imports; return the pieces the checks need."""
    import importlib.metadata

    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    try:  # the module that defines make_arg_parser moved between releases
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
    except ImportError:  # pragma: no cover - other vLLM layouts
        from vllm.entrypoints.openai.cli_args import make_arg_parser
    try:
        from vllm.entrypoints.launchers.launcher import validate_api_server_args
    except ImportError:  # pragma: no cover - other vLLM layouts
        validate_api_server_args = None
    try:
        from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
    except ImportError:  # pragma: no cover - other vLLM layouts
        from vllm.entrypoints.utils import cli_env_setup
    import huggingface_hub.constants as hf_constants
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.reasoning import ReasoningParserManager

    return {
        "hf_constants": hf_constants,
        "version": importlib.metadata.version("vllm"),
        "parser_module": make_arg_parser.__module__,
        "ServeSubcommand": ServeSubcommand,
        "FlexibleArgumentParser": FlexibleArgumentParser,
        "validate_api_server_args": validate_api_server_args,
        "cli_env_setup": cli_env_setup,
        "AsyncEngineArgs": AsyncEngineArgs,
        "ReasoningParserManager": ReasoningParserManager,
    }


def _build_parser(v):
    """The top-level `vllm` parser with the `serve` subcommand, as cli/main.py builds it."""
    parser = v["FlexibleArgumentParser"](prog="vllm", description="vLLM CLI")
    parser.add_argument("-v", "--version", action="version", version=v["version"])
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    cmd = v["ServeSubcommand"]()
    cmd.subparser_init(subparsers).set_defaults(dispatch_function=cmd.cmd)
    return parser, cmd


def _check_one(v, parser, cmd, argv: list[str], capture: _Capture) -> dict:
    capture.records.clear()
    result = {"ok": False, "error": "", "stage": "parse", "warnings": []}
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
            args = parser.parse_args(["serve", *argv])
            result["stage"] = "validate_parsed_serve_args"
            cmd.validate(args)
            # ServeSubcommand.cmd() does this first.
            if getattr(args, "model_tag", None) is not None:
                args.model = args.model_tag
            check = v["validate_api_server_args"]
            if check is not None:
                result["stage"] = "validate_api_server_args"
                if args.tool_parser_plugin or getattr(args, "reasoning_parser_plugin", ""):
                    result["warnings"].append("parser plugin given: parser names not checked")
                else:
                    check(args)
            result["stage"] = "reasoning_parser"
            name = getattr(args, "reasoning_parser", None)
            if name and not getattr(args, "reasoning_parser_plugin", None):
                known = v["ReasoningParserManager"].list_registered()
                if name not in known:
                    # vLLM's own message (ReasoningParserManager.get_reasoning_parser)
                    raise KeyError(f"Reasoning parser '{name}' not found. Available parsers: {', '.join(known)}")
            result["stage"] = "engine_args"
            # With HF_HUB_OFFLINE, __post_init__ swaps the model id for its
            # local snapshot path and fails when the weights are not cached:
            # a fact about this machine, not about the command line.
            hf_constants = v["hf_constants"]
            offline, hf_constants.HF_HUB_OFFLINE = hf_constants.HF_HUB_OFFLINE, False
            try:
                v["AsyncEngineArgs"].from_cli_args(args)
            finally:
                hf_constants.HF_HUB_OFFLINE = offline
    except SystemExit as exc:
        text = err.getvalue().strip()
        if exc.code == 0:
            text = "parser exited with status 0 (e.g. --help or --version), serve would not start"
        result["error"] = text or f"parser exited with status {exc.code}"
    except Exception as exc:
        text = err.getvalue().strip()
        msg = f"{type(exc).__name__}: {exc}"
        result["error"] = f"{text}\n{msg}" if text else msg
    else:
        result["ok"] = True
        result["stage"] = ""
    result["warnings"] += capture.records
    return result


def main() -> int:
    # vLLM logs to stdout; keep the real stdout for our JSON alone.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    _no_network()
    v = _import_vllm()
    if sys.argv[1:] == ["--info"]:
        json.dump({"vllm": v["version"], "parser": v["parser_module"]}, out)
        out.write("\n")
        return 0

    argvs = json.load(sys.stdin)
    if not isinstance(argvs, list) or not all(
        isinstance(a, list) and all(isinstance(s, str) for s in a) for a in argvs
    ):
        print("stdin must be a JSON list of lists of strings", file=sys.stderr)
        return 2

    v["cli_env_setup"]()
    capture = _Capture()
    logging.getLogger("vllm").addHandler(capture)
    parser, cmd = _build_parser(v)
    results = [_check_one(v, parser, cmd, argv, capture) for argv in argvs]
    json.dump(results, out, indent=1)
    out.write("\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
