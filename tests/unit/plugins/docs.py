"""A module's documented options, its doc fragments merged in as ansible-doc does, against its argument spec."""

from __future__ import annotations

import yaml
from ansible_collections.thorfleet.llm.plugins.doc_fragments import litellm as litellm_fragment

FRAGMENTS = {"thorfleet.llm.litellm": litellm_fragment.ModuleDocFragment.DOCUMENTATION}


def documented_options(documentation: str) -> dict:
    doc = yaml.safe_load(documentation)
    options = dict(doc.get("options") or {})
    for name in doc.get("extends_documentation_fragment", []):
        options.update(yaml.safe_load(FRAGMENTS[name])["options"])
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
