"""A cache source in the jetson-containers layout, with every model the vllm_server profiles name.

    <root>/data/models/huggingface/hub/models--ORG--NAME/...   (see hfcache)
    <root>/data/vllm_cache/torch_compile_cache/...            vLLM's compile cache
    <root>/data/encodings/{cl100k_base,o200k_base}.tiktoken   for gpt-oss

The weights are a few KB each: the layout, links and names are real, the sizes are not. `weights_mb` adds
that many MB as gpt-oss-120b's sharded safetensors (with their index) and a compile cache of a twentieth of
that, for copies whose duration matters. Making a source again rewrites nothing that is already right.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from . import CACHE_DIR, REPO_DIR
from .hfcache import default_files, make_model, safetensors

SOURCES = CACHE_DIR / "sources"
PROFILES = REPO_DIR / "roles" / "thorfleet_defaults" / "defaults" / "main.yml"
ENCODINGS = ("cl100k_base", "o200k_base")
# Long enough for every profile's max_model_len, as the real models' configs are.
MAX_POSITION_EMBEDDINGS = 262144
# NVIDIA's ModelOpt checkpoints name their precision in config.json; vllm-sim paces itself by it.
MODELOPT_SUFFIXES = {"-FP8": "FP8", "-FP4": "NVFP4"}
SHARDED_MODEL = "openai/gpt-oss-120b"
SHARD_BYTES = 64 * 1024 * 1024
MB = 1024 * 1024


def source_root(fleet: str) -> Path:
    """The host folder a fleet's cache source container serves."""
    return SOURCES / fleet


def profile_models() -> list[str]:
    """Every model and draft model the vllm_server profiles name, once each, sorted."""
    profiles = yaml.safe_load(PROFILES.read_text(encoding="utf-8"))["vllm_server_profiles"]
    return sorted({repo for p in profiles.values() for repo in [p["model"], *p.get("draft_models", [])]})


def write_if_changed(path: Path, content: bytes) -> None:
    if not path.exists() or path.stat().st_size != len(content) or path.read_bytes() != content:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def shard_sizes(total: int) -> list[int]:
    count = -(-total // SHARD_BYTES)
    return [SHARD_BYTES] * (count - 1) + [total - SHARD_BYTES * (count - 1)] if count else []


def add_shards(hub: Path, repo: str, total: int) -> None:
    """`total` bytes of weights as model-0000i-of-0000n.safetensors plus the index, one shard in memory at a time."""
    sizes = shard_sizes(total)
    names = [f"model-{i:05d}-of-{len(sizes):05d}.safetensors" for i in range(1, len(sizes) + 1)]
    for name, size in zip(names, sizes, strict=True):
        make_model(hub, repo, {name: safetensors(f"{repo}/{name}", size)})
    index = {"metadata": {"total_size": total}, "weight_map": {f"layer{i}.weight": n for i, n in enumerate(names)}}
    make_model(hub, repo, {"model.safetensors.index.json": json.dumps(index, indent=2).encode()})


def add_compile_cache(vllm_cache: Path, total: int) -> None:
    """vLLM's torch.compile output for one configuration: graphs, generated code and compiled kernels."""
    backbone = vllm_cache / "torch_compile_cache" / "3f9a1c07d2" / "rank_0_0" / "backbone"
    write_if_changed(backbone / "computation_graph.py", b"# vllm-sim: the captured graph\n")
    write_if_changed(backbone / "vllm_compile_cache.py", b"# vllm-sim: compiled graphs\n{}\n")
    kernels = 4
    for i in range(kernels):
        write_if_changed(backbone / "inductor_cache" / f"kernel_{i}.so", safetensors(f"kernel{i}", total // kernels))


def make_source(root: Path, weights_mb: int = 0) -> Path:
    hub = root / "data" / "models" / "huggingface" / "hub"
    for repo in profile_models():
        files = default_files(repo)
        config = json.loads(files["config.json"])
        config["max_position_embeddings"] = MAX_POSITION_EMBEDDINGS
        algo = next(
            (a for suffix, a in MODELOPT_SUFFIXES.items() if repo.startswith("nvidia/") and repo.endswith(suffix)), None
        )
        if algo:
            config["quantization_config"] = {"quant_method": "modelopt", "quant_algo": algo}
        files["config.json"] = json.dumps(config, indent=2).encode()
        make_model(hub, repo, files)
    vllm_cache = root / "data" / "vllm_cache"
    vllm_cache.mkdir(parents=True, exist_ok=True)
    if weights_mb:
        add_shards(hub, SHARDED_MODEL, weights_mb * MB)
        add_compile_cache(vllm_cache, weights_mb * MB // 20)
    encodings = root / "data" / "encodings"
    for name in ENCODINGS:
        # tiktoken's format: one "base64-token rank" pair a line.
        lines = [f"{hashlib.sha256(f'{name}{i}'.encode()).hexdigest()[:8]} {i}\n" for i in range(256)]
        write_if_changed(encodings / f"{name}.tiktoken", "".join(lines).encode())
    return root
