"""vllm-sim's parser gives vLLM 0.31.0's verdict on every case of the corpus and every profile the role renders.

Both parsers run the same checks (roles/vllm_server/files/vllm_check.py, batched by vllm_parse.py): vLLM's in
the pinned venv, vllm-sim's `vllm` package under this python. The script itself, as a unit runs it, is tried on
the real vLLM here and on vllm-sim in sim/tests/test_vllm_sim_parser.py.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from rendering import render
from vllm_corpus import ACCEPTED, REJECTED

VLLM_CHECK = Path(__file__).resolve().parents[2] / "roles" / "vllm_server" / "files" / "vllm_check.py"
CORPUS = {**ACCEPTED, **{name: argv for name, (argv, _stage, _fragment) in REJECTED.items()}}


@pytest.fixture(scope="module")
def profiles() -> dict[str, list[str]]:
    return {name: argv[2:] for name, argv in render()["vllm_commands"].items()}


@pytest.fixture(scope="module")
def verdicts(vllm_parser, vllm_sim_parser, profiles) -> dict[str, tuple[dict, dict]]:
    """name -> (vLLM's result, vllm-sim's result), for the corpus and the profiles (`profile:NAME`)."""
    cases = {**CORPUS, **{f"profile:{name}": argv for name, argv in profiles.items()}}
    argvs = list(cases.values())
    return dict(zip(cases, zip(vllm_parser(argvs), vllm_sim_parser(argvs), strict=True), strict=True))


def verdict(result: dict) -> str:
    return "accepted" if result["ok"] else f"refused at {result['stage']}"


@pytest.mark.parametrize("name", list(CORPUS))
def test_vllm_sim_gives_vllms_verdict(verdicts, name):
    vllm, sim = verdicts[name]
    assert verdict(sim) == verdict(vllm), (
        f"{shlex.join(CORPUS[name])}\nvLLM: {vllm['error'] or 'accepted'}\nvllm-sim: {sim['error'] or 'accepted'}"
    )


def test_vllm_sim_accepts_every_profile_as_vllm_does(verdicts, profiles):
    results = {name: verdicts[f"profile:{name}"] for name in profiles}
    assert {name: (verdict(vllm), verdict(sim)) for name, (vllm, sim) in results.items()} == {
        name: ("accepted", "accepted") for name in profiles
    }


def test_vllm_sim_takes_every_flag_vllm_takes(vllm_parser, vllm_sim_parser):
    assert vllm_sim_parser.options() == vllm_parser.options()


@pytest.mark.parametrize(
    ("name", "returncode", "stderr"),
    [
        ("seed-qwen3-vl", 0, ""),
        (
            "compilation-config-level-0",
            1,
            "vllm serve: error: argument --compilation-config/-cc: 1 validation error for CompilationConfig\n"
            "level\n"
            "  Unexpected keyword argument [type=unexpected_keyword_argument, input_value=0, input_type=int]\n",
        ),
    ],
)
def test_vllm_check_prints_vllms_own_message(vllm_parser, name, returncode, stderr):
    """The script the collection runs in the image, on the real vLLM: silent when accepted, vLLM's words when not."""
    run = subprocess.run(
        [vllm_parser.python, str(VLLM_CHECK), *CORPUS[name]],
        capture_output=True,
        text=True,
        env=vllm_parser.env,
        timeout=300,
        check=False,
    )
    assert (run.returncode, run.stdout, run.stderr) == (returncode, "", stderr)
