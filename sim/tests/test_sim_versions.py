"""The simulator's other image versions, which rolling updates move the simulated fleet to."""

import pytest
import yaml
from test_vllm_sim import HELLO, Launcher, call
from thorsim import REPO_DIR, images

SIM_VARS = REPO_DIR / "inventories" / "sim" / "group_vars" / "thor" / "main.yml"


def test_variants_are_other_tags_of_the_service_images_with_archives_of_their_own():
    refs = [variant.ref for variant in images.VARIANTS]
    assert refs == [
        "thorfleet-sim/postgres:0.1.1",
        "thorfleet-sim/vllm-sim:0.1.1",
        "thorfleet-sim/litellm-sim:0.1.1",
        "thorfleet-sim/vllm-sim:0.1.1-broken",
    ]
    assert not set(refs) & {image.ref for image in images.IMAGES}
    paths = [variant.archive_path for variant in images.VARIANTS]
    assert len(set(paths)) == len(paths)
    assert not set(paths) & {image.archive_path for image in images.IMAGES}
    assert images.VARIANTS[3].dockerfile() == "FROM thorfleet-sim/vllm-sim:0.1.0\nENV THORSIM_VLLM_BROKEN_GPU=1\n"


def test_a_variant_is_rebuilt_when_its_base_or_its_env_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path)
    (tmp_path / "svc").mkdir()
    source = tmp_path / "svc" / "svc.py"
    source.write_text("print(1)\n")
    base = images.Image("svc", base=images.Image("root", packages=("python3",)))
    plain = images.Variant(base, "0.2.0")
    first = images.inputs_hash(plain)
    assert first != images.inputs_hash(base)
    assert images.inputs_hash(images.Variant(base, "0.2.0", (("X", "1"),))) != first
    assert images.inputs_hash(images.Variant(base, "0.2.1")) != first
    source.write_text("print(2)\n")
    assert images.inputs_hash(plain) != first


def test_the_sim_inventory_names_every_variant_archive():
    archive_files = yaml.safe_load(SIM_VARS.read_text())["container_images_archive_files"]
    for image in (images.POSTGRES, images.VLLM, images.LITELLM, *images.VARIANTS):
        assert archive_files[image.ref] == image.archive_path.name


@pytest.fixture
def launcher(tmp_path):
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.close()


def test_a_broken_gpu_answers_health_and_models_but_fails_every_completion(launcher):
    sim = launcher.start("--served-model-name", "tiny", env={"THORSIM_VLLM_BROKEN_GPU": "1"})
    assert call(sim.port, "GET", "/health")[0] == 200
    assert [card["id"] for card in call(sim.port, "GET", "/v1/models")[1]["data"]] == ["tiny"]
    for path, payload in (
        ("/v1/chat/completions", {"model": "tiny", "messages": HELLO, "max_tokens": 1}),
        ("/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": 1, "stream": True}),
    ):
        status, body = call(sim.port, "POST", path, payload)
        assert status == 500
        assert body["error"]["type"] == "InternalServerError"
        assert "CUDA error" in body["error"]["message"]
    # A bad request is still refused as such, before the engine is reached.
    assert call(sim.port, "POST", "/v1/chat/completions", {"model": "tiny", "messages": []})[0] == 400


def test_without_the_knob_completions_work(launcher):
    sim = launcher.start("--served-model-name", "tiny", env={"THORSIM_VLLM_BROKEN_GPU": "0"})
    assert call(sim.port, "POST", "/v1/chat/completions", {"model": "tiny", "messages": HELLO})[0] == 200
