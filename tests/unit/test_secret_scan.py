"""The secret scan over each scenario's output (tests/scenarios.py) finds what it must and names no value."""

import pytest
import scenarios
import yaml


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    """A scenario's folder under the repository, with generated secrets and a key store in its ephemeral directory."""
    generated = tmp_path / "generated.yml"
    generated.write_text(
        yaml.safe_dump(
            {
                "container_images_archive_dir": "/srv/archives",
                "postgres_password": "pg-" + "p" * 21,
                "litellm_proxy_master_key": "sk-" + "m" * 48,
            }
        )
    )
    monkeypatch.setattr(scenarios, "GENERATED", generated)
    monkeypatch.setattr(scenarios, "REPO", tmp_path)
    store = tmp_path / "ephemeral" / "inventory.artifacts" / "keys" / "raw-keys.yml"
    store.parent.mkdir(parents=True)
    store.write_text(yaml.safe_dump({"alice": "sk-" + "a" * 32, "owui@thor-01": "sk-" + "o" * 32}))
    return tmp_path


def test_the_generated_secrets_and_every_issued_key_are_scanned_for(fleet):
    found = scenarios.secrets(fleet / "ephemeral")
    assert set(found) == {
        "postgres_password",
        "litellm_proxy_master_key",
        "raw key alice (inventory.artifacts/keys/raw-keys.yml)",
        "raw key owui@thor-01 (inventory.artifacts/keys/raw-keys.yml)",
    }


def test_a_secret_anywhere_in_a_line_is_a_hit_named_without_its_value(fleet):
    found = scenarios.secrets(fleet / "ephemeral")
    log = fleet / "molecule.log"
    log.write_text(
        "ok\n[ERROR]: gate failed: Authorization: Bearer sk-" + "m" * 48 + ".\nDATABASE_URL=x:pg-" + "p" * 21
    )
    hits = scenarios.scan([log, fleet / "not-written.log"], found)
    assert hits == ["litellm_proxy_master_key in molecule.log line 2", "postgres_password in molecule.log line 3"]
    assert not any("m" * 48 in hit or "p" * 21 in hit for hit in hits)


def test_clean_output_has_no_hit(fleet):
    log = fleet / "playbooks.log"
    log.write_text("PLAY RECAP\nthor-01 : ok=80 changed=0 failed=0\nsk-**** and a key's alias alice\n")
    assert scenarios.scan([log], scenarios.secrets(fleet / "ephemeral")) == []


def test_a_secret_too_short_to_scan_for_is_refused(fleet):
    (fleet / "generated.yml").write_text(yaml.safe_dump({"metrics_proxy_token": "short"}))
    with pytest.raises(SystemExit, match="metrics_proxy_token"):
        scenarios.secrets(fleet / "ephemeral")
