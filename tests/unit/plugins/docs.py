"""What ansible-doc shows: a module's documented options (its doc fragments merged in) against its argument spec,
and the documentation files of the collection's filter and test plugins."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from ansible.parsing.plugin_docs import read_docstring
from ansible.plugins.doc_fragments import action_common_attributes
from ansible_collections.thorfleet.llm.plugins.doc_fragments import chart as chart_fragment
from ansible_collections.thorfleet.llm.plugins.doc_fragments import docker_engine as docker_engine_fragment
from ansible_collections.thorfleet.llm.plugins.doc_fragments import litellm as litellm_fragment

FRAGMENTS = {
    "thorfleet.llm.litellm": litellm_fragment.ModuleDocFragment.DOCUMENTATION,
    "thorfleet.llm.docker_engine": docker_engine_fragment.ModuleDocFragment.DOCUMENTATION,
    "thorfleet.llm.chart": chart_fragment.ModuleDocFragment.DOCUMENTATION,
    "ansible.builtin.action_common_attributes": action_common_attributes.ModuleDocFragment.DOCUMENTATION,
    "ansible.builtin.action_common_attributes.flow": action_common_attributes.ModuleDocFragment.FLOW,
}
PLUGINS = Path(__file__).resolve().parents[3] / "plugins"
# Jinja plugin kind -> the class a plugin file defines and its method that returns {name: function}.
JINJA_PLUGINS = {"filter": ("FilterModule", "filters"), "test": ("TestModule", "tests")}


def documented_options(documentation: str) -> dict:
    doc = yaml.safe_load(documentation)
    options = dict(doc.get("options") or {})
    for name in doc.get("extends_documentation_fragment", []):
        options.update(yaml.safe_load(FRAGMENTS[name]).get("options") or {})  # some hold only attributes
    return options


def assert_documented(documentation: str, spec: dict) -> None:
    """Every option documented with the argument spec's type, default, choices, elements and required."""

    def compare(doc_options, spec_options, where):
        assert set(doc_options) == set(spec_options), where
        for name, option in spec_options.items():
            doc = doc_options[name]
            assert doc["type"] == option.get("type", "str"), f"{where}{name}"
            assert doc.get("default") == option.get("default"), f"{where}{name}"
            assert doc.get("choices") == option.get("choices"), f"{where}{name}"
            assert doc.get("elements") == option.get("elements"), f"{where}{name}"
            assert bool(doc.get("required")) == bool(option.get("required")), f"{where}{name}"
            if "options" in option:
                compare(doc["suboptions"], option["options"], f"{where}{name}.")

    compare(documented_options(documentation), spec, "")


def jinja_plugins() -> dict:
    """Every filter and test plugin as the plugin files return them to Ansible: {(kind, name): function}."""
    found = {}
    for kind, (class_name, method) in JINJA_PLUGINS.items():
        for path in sorted((PLUGINS / kind).glob("*.py")):
            module = importlib.import_module(f"ansible_collections.thorfleet.llm.plugins.{kind}.{path.stem}")
            plugins = getattr(getattr(module, class_name)(), method)()
            found.update({(kind, name): function for name, function in plugins.items()})
    return found


def jinja_plugin_documentation(kind: str, name: str) -> dict:
    """A filter or test plugin's documentation file (plugins/<kind>/<name>.yml), read as ansible-doc reads it."""
    path = PLUGINS / kind / f"{name}.yml"
    assert path.exists(), f"{kind} plugin {name} has no documentation file {path.relative_to(PLUGINS.parent)}"
    return read_docstring(str(path), ignore_errors=False)
