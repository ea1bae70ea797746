"""The simulator's cache source: real hub layout, sharded weights on request, made again without rewrites."""

import json
import os

import yaml
from thorsim import cache, fleet


def snapshot_files(root):
    return {
        str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def test_weights_mb_adds_shards_with_an_index_and_a_compile_cache(tmp_path):
    cache.make_source(tmp_path, weights_mb=150)
    repo = tmp_path / "data/models/huggingface/hub/models--openai--gpt-oss-120b"
    (snapshot,) = (repo / "snapshots").iterdir()
    shards = sorted(p.name for p in snapshot.glob("model-*.safetensors"))
    assert shards == [f"model-{i:05d}-of-00003.safetensors" for i in (1, 2, 3)]
    assert all(os.readlink(snapshot / s).startswith("../../blobs/") for s in shards)
    assert sum((snapshot / s).stat().st_size for s in shards) > 150 * 1024 * 1024
    assert (snapshot / "model.safetensors.index.json").is_symlink()
    kernels = list((tmp_path / "data/vllm_cache/torch_compile_cache").rglob("*.so"))
    assert sum(k.stat().st_size for k in kernels) > 7 * 1024 * 1024


def test_making_a_source_again_rewrites_nothing(tmp_path):
    cache.make_source(tmp_path, weights_mb=1)
    before = snapshot_files(tmp_path)
    cache.make_source(tmp_path, weights_mb=1)
    assert snapshot_files(tmp_path) == before


def test_the_inventory_names_the_fleets_cache_source():
    smoke = fleet.Fleet("smoke", "smoke-thor", ephemeral=True)
    data = yaml.safe_load(yaml.safe_dump(fleet.inventory_data(smoke, smoke.unit_names(1))))
    assert data["all"]["hosts"]["cache_source"]["ansible_host"] == "smoke-cache-source"
    assert data["all"]["hosts"]["cache_source"]["ansible_connection"] == "community.docker.docker"
    # model_cache's default source root is where the source container mounts the fleet's folder.
    defaults = yaml.safe_load((cache.REPO_DIR / "roles/model_cache/defaults/main.yml").read_text())
    assert defaults["model_cache_source_root"] == fleet.SOURCE_MOUNT
    assert cache.source_root("smoke") == cache.SOURCES / "smoke"


def test_nvidias_fp8_and_fp4_checkpoints_name_their_precision_as_modelopt_writes_it(tmp_path):
    cache.make_source(tmp_path)
    hub = tmp_path / "data/models/huggingface/hub"

    def quantization(repo: str):
        (snapshot,) = (hub / f"models--{repo.replace('/', '--')}" / "snapshots").iterdir()
        return json.loads((snapshot / "config.json").read_text()).get("quantization_config")

    assert quantization("nvidia/Llama-3.1-8B-Instruct-FP8") == {"quant_method": "modelopt", "quant_algo": "FP8"}
    assert quantization("nvidia/Llama-3.1-8B-Instruct-FP4") == {"quant_method": "modelopt", "quant_algo": "NVFP4"}
    assert quantization("meta-llama/Llama-3.1-8B-Instruct") is None
