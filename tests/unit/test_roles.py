"""Every role's contract: argument_specs equal to defaults, documented, prefixed, tagged; every entry point used is
declared; the wiring lives in thorfleet_defaults alone."""

import re
from pathlib import Path

import pytest
import yaml

# Not imported from conftest: with sim/tests in the same run, `conftest` may be that folder's.
REPO = Path(__file__).resolve().parents[2]


class SpecLoader(yaml.SafeLoader):
    """Argument specs mark templated defaults !unsafe: Ansible templates a spec before validating with it, and a
    default that names a variable not defined yet (a secret on the controller) would fail every play."""


SpecLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))

ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())
WIRING = "thorfleet_defaults"
# Roles of entry points that compose the service roles or run a workflow on the controller and the units (the keys)
# rather than a service of their own.
COMPOSERS = {"stack", "benchmark", "keys", "workshop"}
# Private to the service roles (underscore, as prometheus-community's _common): entry points only, no main.
PRIVATE = "_common"
SERVICES = [role for role in ROLES if role not in (WIRING, PRIVATE) and role not in COMPOSERS]
PUBLIC = [role for role in ROLES if role != PRIVATE]
# Where roles are entered: playbooks, roles, scenarios, the simulator's and the tests' playbooks.
ENTERING = ("playbooks", "roles", "molecule", "sim", "tests")
YAML_FILES = [path for top in ENTERING for path in (REPO / top).rglob("*.yml")]


def load(path: Path):
    return yaml.load(path.read_text(), Loader=SpecLoader) or {}


def specs(role):
    return load(REPO / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]


def test_every_role_is_covered():
    assert ROLES == [
        "_common",
        "benchmark",
        "container_images",
        "jetson_runtime",
        "keys",
        "litellm_proxy",
        "metrics_proxy",
        "model_cache",
        "open_webui",
        "postgres",
        "stack",
        "thorfleet_defaults",
        "tls_proxy",
        "vllm_server",
        "workshop",
    ]


@pytest.mark.parametrize("role", PUBLIC)
def test_argument_specs_equal_defaults(role):
    defaults = load(REPO / "roles" / role / "defaults" / "main.yml")
    options = specs(role)["main"]["options"]
    with_default = {name: spec["default"] for name, spec in options.items() if "default" in spec}
    assert with_default == defaults
    # What has no default is required: the secrets, which come from Ansible Vault.
    for name, spec in options.items():
        assert spec.get("description"), f"{name} is undocumented"
        optional = name.endswith("_target")  # an entry point's input, with its fallback in the tasks
        assert "default" in spec or spec.get("required") or optional, f"{name}: no default and not required"
        if spec.get("required"):
            assert spec.get("no_log"), f"required {name} is a secret and must be no_log"


@pytest.mark.parametrize("role", [role for role in ROLES if role != WIRING])
def test_variables_carry_the_role_prefix(role):
    for entry in specs(role).values():
        assert all(name.startswith(f"{role}_") for name in entry.get("options", {})), entry
    internal = load(REPO / "roles" / role / "vars" / "main.yml") if (REPO / "roles" / role / "vars").exists() else {}
    assert all(name.startswith((f"_{role}_", f"__{role}_")) for name in internal)


def test_the_wiring_is_thorfleet_or_a_roles_public_contract():
    others = tuple(f"{role}_" for role in ROLES if role != WIRING)
    assert all(name.startswith(("thorfleet_", *others)) for name in specs(WIRING)["main"]["options"])
    assert not (REPO / "roles" / WIRING / "tasks").exists(), "the wiring role holds defaults only"


@pytest.mark.parametrize("role", [role for role in ROLES if role != WIRING])
def test_every_role_depends_on_the_wiring(role):
    meta = load(REPO / "roles" / role / "meta" / "main.yml")
    assert {"role": f"thorfleet.llm.{WIRING}"} in meta["dependencies"]


@pytest.mark.parametrize("role", [role for role in PUBLIC if role != WIRING])
def test_defaults_refer_to_no_other_role(role):
    """A role's defaults name its own variables and the wiring's, never another role's."""
    wiring = set(load(REPO / "roles" / WIRING / "defaults" / "main.yml"))
    # A required option has no default to refer to: it is a secret the inventory gives every role alike.
    secrets = {
        name for other in PUBLIC for name, spec in specs(other)["main"]["options"].items() if spec.get("required")
    }
    text = (REPO / "roles" / role / "defaults" / "main.yml").read_text()
    expressions = re.findall(r"\{\{(.*?)\}\}", text, re.S)
    named = {word for expr in expressions for word in re.findall(r"\b[a-z][a-z0-9_]*\b", expr)}
    foreign = {
        name
        for name in named
        for other in ROLES
        if other not in (role, WIRING) and name.startswith(f"{other}_") and name not in wiring | secrets
    }
    assert not foreign, f"{role}'s defaults refer to {sorted(foreign)}: put the shared value in {WIRING}"


@pytest.mark.parametrize("role", SERVICES)
def test_every_service_role_has_a_preflight_and_tags(role):
    tasks = REPO / "roles" / role / "tasks"
    assert (tasks / "preflight.yml").exists()
    main = (tasks / "main.yml").read_text()
    assert "preflight.yml" in main
    for phase in ("install", "configure", "run"):
        assert f"{role}_{phase}" in main


def entered():
    """(file, role, entry point) for every import_role/include_role with tasks_from in the tree."""
    found = []
    for path in YAML_FILES:
        text = path.read_text()
        for match in re.finditer(r"name: thorfleet\.llm\.(\w+)\n(\s+)tasks_from: (\w+)", text):
            found.append((path.relative_to(REPO).as_posix(), match[1], match[3]))
    return found


def test_entry_points_are_found():
    assert len(entered()) > 20


@pytest.mark.parametrize(("where", "role", "entry"), entered())
def test_every_entry_point_used_is_declared(where, role, entry):
    """So that argument validation runs wherever a role is entered."""
    assert entry in specs(role), f"{where} enters {role} at {entry}, which its meta/argument_specs.yml does not declare"


@pytest.mark.parametrize("role", ROLES)
def test_every_declared_entry_point_exists(role):
    for entry in specs(role):
        assert (entry == "main" and role == WIRING) or (REPO / "roles" / role / "tasks" / f"{entry}.yml").exists()


def test_no_roles_defaults_are_loaded_by_path():
    loaders = [
        path.relative_to(REPO).as_posix()
        for path in YAML_FILES
        if path.relative_to(REPO).parts[0] != "roles" and re.search(r"roles/\w+/(defaults|vars)/", path.read_text())
    ]
    assert loaders == []


def test_playbooks_hold_no_task_files():
    assert not (REPO / "playbooks" / "tasks").exists()
    assert not (REPO / "playbooks" / "vars").exists()


def test_profiles_cover_the_seeds():
    profiles = load(REPO / "roles" / WIRING / "defaults" / "main.yml")["vllm_server_profiles"]
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


def test_the_private_role_has_entry_points_only():
    assert "main" not in specs(PRIVATE)
    assert not (REPO / "roles" / PRIVATE / "defaults").exists()
    entries = {(where.split("/")[1], task) for where, role, task in entered() if role == PRIVATE}
    assert {role for role, _task in entries} <= {*SERVICES, "stack"}, "only the service roles use the private role"
    # The stack commits or rolls back what the service roles kept, and does nothing else with it.
    assert {task for role, task in entries if role == "stack"} == {"kept"}


@pytest.mark.parametrize("role", SERVICES)
def test_service_roles_reach_the_network_through_the_private_role(role):
    """One way to make the unit network, the folders and check the image, and heal a container left on a removed
    network."""
    paths = list((REPO / "roles" / role / "tasks").glob("*.yml"))
    text = "".join(path.read_text() for path in paths)
    if "community.docker.docker_container:" in text and role not in (
        "jetson_runtime",
        "container_images",
        "model_cache",
    ):
        assert "community.docker.docker_network" not in text
        # Folders on the controller (a CA's) are the role's own; on the unit, the private role makes them.
        on_unit = [task for path in paths for task in tasks_in(load(path)) if task.get("delegate_to") != "localhost"]
        assert not [task for task in on_unit if task.get("ansible.builtin.file", {}).get("state") == "directory"]
        assert "tasks_from: service" in text and 'recreate: "{{ _common_service.network_stale }}"' in text


def spec_options():
    """(role, entry point, option name, option spec) of every argument spec."""
    return [
        (role, entry, name, spec)
        for role in ROLES
        for entry, declared in specs(role).items()
        for name, spec in (declared.get("options") or {}).items()
    ]


def named_in_templates(value):
    """Variable names a default's templates mention (within {{ }} or {% %}), in nested lists and dicts too."""
    if isinstance(value, dict):
        return set().union(*map(named_in_templates, value.values()))
    if isinstance(value, list):
        return set().union(*map(named_in_templates, value))
    expressions = re.findall(r"\{[{%](.*?)[%}]\}", str(value), re.S)
    return {word for expr in expressions for word in re.findall(r"\b[a-z_][a-z0-9_]*\b", expr)}


def test_no_argument_spec_default_templates_a_secret():
    """A failed argument validation prints the spec's data with its defaults templated, whatever the tasks' no_log:
    a default built from a secret would print the secret."""
    options = spec_options()
    secrets = {name for _role, _entry, name, spec in options if spec.get("no_log")}
    secrets |= {name for _role, _entry, name, _spec in options if re.search(r"(password|secret|token|_key)$", name)}
    assert {"postgres_password", "litellm_proxy_master_key", "metrics_proxy_token", "open_webui_secret_key"} <= secrets
    # A default that names a secret holds it, and so does one that names such a default.
    while True:
        tainted = {name for _role, _entry, name, spec in options if named_in_templates(spec.get("default")) & secrets}
        if tainted <= secrets:
            break
        secrets |= tainted
    found = sorted(
        f"{role} ({entry}): {name} templates {sorted(named_in_templates(spec.get('default')) & secrets)}"
        for role, entry, name, spec in options
        if named_in_templates(spec.get("default")) & secrets
    )
    assert not found, "build these in the role's vars/main.yml instead: " + "; ".join(found)


BASELINE = "thorfleet_container_baseline"
CONTAINER = "community.docker.docker_container"
# The roles that run a service container: each makes it through the private role's service step.
CONTAINER_ROLES = ["litellm_proxy", "metrics_proxy", "open_webui", "postgres", "tls_proxy", "vllm_server"]


def tasks_in(tasks, delegate=None):
    """Every task and block of a task list, each with the delegate_to it has or inherits from its block."""
    for task in tasks or []:
        here = task.get("delegate_to", delegate)
        yield {**task, "delegate_to": here} if here else task
        for section in ("block", "rescue", "always"):
            yield from tasks_in(task.get(section), here)


def test_the_service_containers_are_made_through_the_private_role():
    made = {where.split("/")[1] for where, role, entry in entered() if role == PRIVATE and entry == "service"}
    assert sorted(made) == CONTAINER_ROLES


@pytest.mark.parametrize("role", CONTAINER_ROLES)
def test_every_service_container_is_held_to_the_shared_baseline(role):
    """One place for what Docker compares: a container recreated by hand with more is seen on every service."""
    made = [
        task
        for path in sorted((REPO / "roles" / role / "tasks").glob("*.yml"))
        for task in tasks_in(load(path) or [])
        if "image" in (task.get(CONTAINER) or {})
    ]
    assert made, f"{role} makes no container from an image"
    for task in made:
        assert task.get("module_defaults") == {CONTAINER: f"{{{{ {BASELINE} }}}}"}, task["name"]
        assert "comparisons" not in task[CONTAINER], f"{task['name']}: the comparisons belong to {BASELINE}"


def test_the_baseline_compares_strictly_what_it_gives():
    baseline = load(REPO / "roles" / WIRING / "defaults" / "main.yml")[BASELINE]
    comparisons = baseline["comparisons"]
    assert set(comparisons.values()) == {"strict"}
    assert {"env", "published_ports", "mounts", "volumes", "capabilities", "cap_drop", "devices", "networks"} <= set(
        comparisons
    )
    # Docker compares only the options a task gives: the baseline gives those a role may leave unset.
    for option in ("published_ports", "capabilities", "cap_drop", "devices"):
        assert baseline[option] == [], option
    assert baseline["privileged"] is False
    assert baseline["networks_cli_compatible"] is True
