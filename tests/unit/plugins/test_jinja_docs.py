"""Every filter and test plugin has the documentation file ansible-doc shows, matching the function it documents."""

import inspect

import pytest

from .docs import jinja_plugin_documentation, jinja_plugins

PLUGINS = jinja_plugins()


def test_the_plugins_are_found():
    assert ("filter", "to_table") in PLUGINS


@pytest.mark.parametrize(("kind", "name"), sorted(PLUGINS), ids=[f"{kind}/{name}" for kind, name in sorted(PLUGINS)])
def test_every_plugin_is_documented_with_its_parameters_and_examples(kind, name):
    docs = jinja_plugin_documentation(kind, name)
    doc = docs["doc"]
    assert doc["name"] == name
    assert doc["short_description"] and doc["description"]
    assert docs["plainexamples"].strip(), "no EXAMPLES"
    assert "_value" in docs["returndocs"], "RETURN documents no _value"
    # The piped value is _input; the function's other parameters are options, required when they have no default.
    first, *others = inspect.signature(PLUGINS[kind, name]).parameters.values()
    parameters = {"_input": first, **{parameter.name: parameter for parameter in others}}
    assert set(doc["options"]) == set(parameters)
    for option, parameter in parameters.items():
        required = parameter.default is inspect.Parameter.empty
        assert bool(doc["options"][option].get("required")) == required, option
        assert doc["options"][option].get("default") == (None if required else parameter.default), option
