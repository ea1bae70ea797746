# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""What the jetson_runtime role asks a unit before it changes anything, read in one call: the engine of the
jetson_info module (one round trip where a Docker query, a file read and two or three commands took one each)."""

from __future__ import annotations

import json
import platform

from ansible_collections.thorfleet.llm.plugins.module_utils._docker_engine import DockerError


def answer(run, argv):
    """(rc, stdout, stderr) of `argv`; `run` returns rc None when the program is missing."""
    rc, out, err = run(argv)
    return (127, "", f"{argv[0]} not found") if rc is None else (rc, out, err)


def text(path):
    """A file's text; None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def parse_daemon(daemon_text):
    """daemon.json as (dict, error): a missing, empty or blank file is {} (Docker starts without it)."""
    if not (daemon_text or "").strip():
        return {}, ""
    try:
        daemon = json.loads(daemon_text)
    except ValueError as exc:
        return None, f"not valid JSON: {exc}"
    return (daemon, "") if isinstance(daemon, dict) else (None, "not a JSON object")


def read(engine, run, daemon_json, release_file, nvml=True, power_mode=False, jetson_clocks=False):
    """The unit as jetson_runtime needs it. NVML's answer is reported, not judged (the role says what to do about
    it); nvpmodel and jetson_clocks must answer, as their own tasks did: a failure raises RuntimeError."""
    try:
        info = engine.request("GET", "/info")[1] or {}
        unit = dict(can_talk_to_docker=True, default_runtime=info.get("DefaultRuntime", ""), msg="")
    except DockerError as exc:
        unit = dict(can_talk_to_docker=False, default_runtime="", msg=str(exc))
    # Missing or unreadable counts as empty, as Docker treats a missing file.
    unit["daemon"], unit["daemon_error"] = parse_daemon(text(daemon_json))
    unit["release"] = text(release_file)
    unit["architecture"] = platform.machine()
    unit["nvml"] = (
        dict(zip(("rc", "stdout", "stderr"), answer(run, ["nvidia-smi", "-L"]), strict=True)) if nvml else None
    )
    for key, wanted, argv in (
        ("nvpmodel", power_mode, ["nvpmodel", "-q"]),
        ("clocks", jetson_clocks, ["jetson_clocks", "--show"]),
    ):
        unit[key] = None
        if wanted:
            rc, out, err = answer(run, argv)
            if rc != 0:
                raise RuntimeError(f"{' '.join(argv)} failed (rc {rc}): {(err or out).strip()}")
            unit[key] = out
    return unit
