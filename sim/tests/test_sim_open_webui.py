"""The simulator's optional Open WebUI and browser images (no Docker needed)."""

import zipfile

import pytest
import yaml
from thorsim import REPO_DIR, cli, images


def test_the_sim_image_is_the_release_the_role_pins():
    pinned = yaml.safe_load((REPO_DIR / "roles/thorfleet_defaults/defaults/main.yml").read_text())
    assert pinned["container_images_open_webui"] == f"ghcr.io/open-webui/open-webui:v{images.OPEN_WEBUI_VERSION}"
    assert f"open-webui=={images.OPEN_WEBUI_VERSION}" in images.OPEN_WEBUI.wheels
    sim = yaml.safe_load((REPO_DIR / "inventories/sim/group_vars/thor/main.yml").read_text())
    assert sim["container_images_open_webui"] == images.OPEN_WEBUI.ref
    assert sim["container_images_archive_files"][images.OPEN_WEBUI.ref] == images.OPEN_WEBUI.archive_path.name


def test_optional_images_are_built_only_on_demand():
    assert not set(images.ON_DEMAND) & set(images.IMAGES)
    assert cli.parser().parse_args(["build"]).extra == []
    assert cli.parser().parse_args(["build", "open-webui", "browser"]).extra == [images.OPEN_WEBUI, images.BROWSER]


def test_an_unknown_optional_image_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parser().parse_args(["build", "grafana"])
    assert exc.value.code == 2
    assert "invalid choice: 'grafana'" in capsys.readouterr().err


def test_images_without_wheels_keep_their_hashes():
    # Wheels enter an image's inputs only when it has some: the images everyone builds are not rebuilt.
    assert images.wheels_spec(images.LITELLM) == ()
    spec = images.wheels_spec(images.OPEN_WEBUI)
    assert images.OPEN_WEBUI.wheels[0] in spec and "sentence-transformers" in spec and images.WHEELS_PYTHON in spec


def test_requirements_leave_out_extras_and_the_excluded(tmp_path):
    wheel = tmp_path / "app-1.0-py3-none-any.whl"
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: app",
            "Requires-Dist: fastapi==0.1.0",
            "Requires-Dist: Sentence_Transformers==5.0; python_version >= '3.9'",
            "Requires-Dist: accelerate[torch]>=1.0",
            "Requires-Dist: redis==8.0.1",
            "Requires-Dist: pgvector==0.4.2; extra == 'postgres'",
        ]
    )
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("app-1.0.dist-info/METADATA", metadata)
    assert images.requirements(wheel, ("sentence-transformers", "accelerate")) == ["fastapi==0.1.0", "redis==8.0.1"]
