"""Would `vllm serve ARGV` start? Asks the vLLM installed beside the python that runs this.

    python3 vllm_check.py MODEL [--flag value ...]

Run in the image that is to serve, before the running container is replaced: NVIDIA's image, or
vllm-sim, whose `vllm` package offers the same entry points. Prints nothing and exits 0 when vLLM
accepts the command line; prints vLLM's own message (without argparse's usage line) and exits 1 when
it refuses it; exits 2 when this python has no vLLM to ask. Needs no model, GPU or network
(connections are refused): it runs the steps `vllm serve` takes before it reads the model's config,
in order (the stage names below):

  parse                       the `vllm` CLI parser with its serve subcommand: flags, types, choices,
                              JSON configs validated against vLLM's config classes
  validate_parsed_serve_args  ServeSubcommand.validate()
  validate_api_server_args    the tool parser's name with --enable-auto-tool-choice (vLLM checks
                              it only then); skipped when a parser plugin may register more names
  reasoning_parser            --reasoning-parser is a registered name (vLLM looks it up at engine
                              start; it needs no model, so it is checked here)
  engine_args                 AsyncEngineArgs.from_cli_args()
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
# Offline, AsyncEngineArgs swaps the model id for its cached snapshot and fails when the model is not
# cached there: a fact about a cache, not about the command line. The socket guard keeps this offline.
os.environ["HF_HUB_OFFLINE"] = "0"


def no_network() -> None:
    """Refuse every connection but a Unix socket's: a check must never download."""
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family != socket.AF_UNIX:
            raise OSError(f"vllm_check.py: network access refused ({address!r})")
        return real_connect(self, address)

    socket.socket.connect = connect


def serve_parser():
    """(the `vllm` parser with its serve subcommand, as vLLM's CLI builds it; that subcommand)."""
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm")
    serve = ServeSubcommand()
    serve.subparser_init(parser.add_subparsers(dest="subparser"))
    return parser, serve


def check(parser, serve, argv: list[str]) -> tuple[str, str]:
    """('', '') when vLLM accepts `vllm serve ARGV`, else (the stage that refused it, vLLM's message)."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.launcher import validate_api_server_args
    from vllm.reasoning import ReasoningParserManager

    stage, output = "parse", io.StringIO()
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            args = parser.parse_args(["serve", *argv])
            stage = "validate_parsed_serve_args"
            serve.validate(args)
            if args.model_tag is not None:  # what ServeSubcommand.cmd() does first
                args.model = args.model_tag
            stage = "validate_api_server_args"
            if not (args.tool_parser_plugin or args.reasoning_parser_plugin):
                validate_api_server_args(args)
            stage = "reasoning_parser"
            known = ReasoningParserManager.list_registered()
            if args.reasoning_parser and not args.reasoning_parser_plugin and args.reasoning_parser not in known:
                # vLLM's own words (ReasoningParserManager.get_reasoning_parser)
                raise KeyError(
                    f"Reasoning parser '{args.reasoning_parser}' not found. Available parsers: {', '.join(known)}"
                )
            stage = "engine_args"
            AsyncEngineArgs.from_cli_args(args)
    except SystemExit as stop:
        if not stop.code:  # --help or --version: vLLM prints and exits, nothing is served
            return stage, "the parser exited with status 0 (--help or --version): vllm serve would not start"
        return stage, output.getvalue().strip()
    except Exception as error:
        return stage, f"{output.getvalue()}{type(error).__name__}: {error}".strip()
    return "", ""


def decisive(message: str) -> str:
    """The message without argparse's usage line and pydantic's pointers to its docs."""
    skip = ("usage: ", "For further information visit")
    return "\n".join(line for line in message.splitlines() if line.strip() and not line.strip().startswith(skip))


def main() -> int:
    no_network()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            _stage, error = check(*serve_parser(), sys.argv[1:])
    except ImportError as missing:  # no verdict: told apart from a refusal by its status
        print(f"vllm_check.py: this python cannot import vLLM's parser: {missing}", file=sys.stderr)
        return 2
    if error:
        print(decisive(error), file=sys.stderr)
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
