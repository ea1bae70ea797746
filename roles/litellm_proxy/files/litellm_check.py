"""Would LiteLLM serve this config? Asks from the unit's network, with the python of the image that will run it.

    python3 litellm_check.py CONFIG_TEXT

Reads the rendered config.yaml (secrets are only os.environ/ references in it) and asks every model's backend for
its model list, as LiteLLM's OpenAI-compatible route will call it: each must answer within 10 s and list the model
LiteLLM will ask for. Prints nothing and exits 0 when all do; prints one line per problem and exits 1 otherwise.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request

import yaml


def problems(config) -> list[str]:
    if not isinstance(config, dict) or not isinstance(config.get("model_list"), list) or not config["model_list"]:
        return ["the config has no model_list"]
    found = []
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
            found.append(f"model {name}: its backend {base} does not answer ({error})")
            continue
        if served not in listed:
            found.append(f"model {name}: its backend {base} serves {listed}, not {served}")
    return found


def main() -> int:
    try:
        config = yaml.safe_load(sys.argv[1])
    except yaml.YAMLError as error:
        print(f"the config is not YAML: {error}", file=sys.stderr)
        return 1
    found = problems(config)
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
