"""Every role's contract: argument_specs equal to defaults, documented, prefixed, tagged."""

from pathlib import Path

import pytest
import yaml

# Not imported from conftest: with sim/tests in the same run, `conftest` may be that folder's.
REPO = Path(__file__).resolve().parents[2]

ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())


def load(path: Path):
    return yaml.safe_load(path.read_text()) or {}


def test_every_role_is_covered():
    assert ROLES == [
        "container_images",
        "jetson_runtime",
        "litellm_proxy",
        "metrics_proxy",
        "model_cache",
        "open_webui",
        "postgres",
        "vllm_server",
    ]


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_equal_defaults(role):
    defaults = load(REPO / "roles" / role / "defaults" / "main.yml")
    options = load(REPO / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    with_default = {name: spec["default"] for name, spec in options.items() if "default" in spec}
    assert with_default == defaults
    # What has no default is required: the secrets, which come from Ansible Vault.
    for name, spec in options.items():
        assert spec.get("description"), f"{name} is undocumented"
        assert "default" in spec or spec.get("required"), f"{name} has neither a default nor required"
        if spec.get("required"):
            assert spec.get("no_log"), f"required {name} is a secret and must be no_log"


@pytest.mark.parametrize("role", ROLES)
def test_variables_carry_the_role_prefix(role):
    options = load(REPO / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert all(name.startswith(f"{role}_") for name in options)
    internal = load(REPO / "roles" / role / "vars" / "main.yml") if (REPO / "roles" / role / "vars").exists() else {}
    assert all(name.startswith((f"_{role}_", f"__{role}_")) for name in internal)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_a_preflight_and_tags(role):
    tasks = REPO / "roles" / role / "tasks"
    assert (tasks / "preflight.yml").exists()
    main = (tasks / "main.yml").read_text()
    assert "preflight.yml" in main
    for phase in ("install", "configure", "run"):
        assert f"{role}_{phase}" in main


def test_profiles_cover_the_seeds():
    profiles = load(REPO / "roles" / "vllm_server" / "defaults" / "main.yml")["vllm_server_profiles"]
    assert set(profiles) == {
        "qwen3-vl-30b-a3b-awq",
        "gpt-oss-120b",
        "llama-3.1-8b-fp16",
        "llama-3.1-8b-fp8",
        "llama-3.1-8b-fp4",
        "llama-3.1-8b-fp4-eagle3",
    }
    assert profiles["gpt-oss-120b"]["tiktoken"] is True
    assert profiles["llama-3.1-8b-fp4-eagle3"]["settings"]["speculative_config"]["method"] == "eagle3"
