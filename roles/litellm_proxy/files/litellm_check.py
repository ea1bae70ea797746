"""Would LiteLLM serve this config? Asks from the unit's network, with the python of the image that will run it.

    python3 litellm_check.py CONFIG_TEXT

Reads the rendered config.yaml (secrets are only os.environ/ references in it) and asks every model's backend for
its model list, as LiteLLM's OpenAI-compatible route will call it: each must answer within 10 s and list the model
LiteLLM will ask for. A model name given once per deployment (the fleet gateway's, one per unit) is served while one of
its deployments answers, and the router routes around the others: their problems are printed on stdout as notes.
Exits 0 when every model name is served; prints one line per problem on stderr and exits 1 otherwise.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request

import yaml


def problems(config) -> tuple[list[str], list[str]]:
    """(what stops the config from serving, the deployments its router will route around)."""
    if not isinstance(config, dict) or not isinstance(config.get("model_list"), list) or not config["model_list"]:
        return ["the config has no model_list"], []
    found, served_names = [], set()
    failed = {}
    for entry in config["model_list"]:
        params = entry.get("litellm_params") if isinstance(entry, dict) else None
        if not isinstance(params, dict) or not entry.get("model_name") or not params.get("model"):
            found.append(f"a model_list entry lacks model_name or litellm_params.model: {entry!r}")
            continue
        name, base = entry["model_name"], params.get("api_base")
        if not base:
            continue  # a provider's own endpoint: nothing on this unit to ask
        served = params["model"].split("/", 1)[-1]  # openai/<served name>
        key = params.get("api_key", "")
        if isinstance(key, str) and key.startswith("os.environ/"):
            key = os.environ.get(key.removeprefix("os.environ/"), "")
        request = urllib.request.Request(base.rstrip("/") + "/models", headers={"Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                listed = [model.get("id") for model in json.load(answer).get("data", [])]
        except (OSError, ValueError, AttributeError) as error:
            failed.setdefault(name, []).append(f"model {name}: its backend {base} does not answer ({error})")
            continue
        if served not in listed:
            failed.setdefault(name, []).append(f"model {name}: its backend {base} serves {listed}, not {served}")
        else:
            served_names.add(name)
    notes = [line for name, lines in failed.items() if name in served_names for line in lines]
    found += [line for name, lines in failed.items() if name not in served_names for line in lines]
    return found, notes


def main() -> int:
    try:
        config = yaml.safe_load(sys.argv[1])
    except yaml.YAMLError as error:
        print(f"the config is not YAML: {error}", file=sys.stderr)
        return 1
    found, notes = problems(config)
    for note in notes:
        print(note)
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
