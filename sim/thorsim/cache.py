"""A cache source in the jetson-containers layout, with every model the vllm_server profiles name.

    <root>/data/models/huggingface/hub/models--ORG--NAME/...   (see hfcache)
    <root>/data/vllm_cache/                                   vLLM's compile cache
    <root>/data/encodings/{cl100k_base,o200k_base}.tiktoken   for gpt-oss

The weights are a few KB each: the layout, links and names are real, the sizes are not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from . import CACHE_DIR, REPO_DIR
from .hfcache import default_files, make_model

DEFAULT_ROOT = CACHE_DIR / "source"
PROFILES = REPO_DIR / "roles" / "vllm_server" / "defaults" / "main.yml"
ENCODINGS = ("cl100k_base", "o200k_base")
# Long enough for every profile's max_model_len, as the real models' configs are.
MAX_POSITION_EMBEDDINGS = 262144


def profile_models() -> list[str]:
    """Every model and draft model the vllm_server profiles name, once each, sorted."""
    profiles = yaml.safe_load(PROFILES.read_text(encoding="utf-8"))["vllm_server_profiles"]
    return sorted({repo for p in profiles.values() for repo in [p["model"], *p.get("draft_models", [])]})


def make_source(root: Path = DEFAULT_ROOT) -> Path:
    hub = root / "data" / "models" / "huggingface" / "hub"
    for repo in profile_models():
        files = default_files(repo)
        config = json.loads(files["config.json"])
        config["max_position_embeddings"] = MAX_POSITION_EMBEDDINGS
        files["config.json"] = json.dumps(config, indent=2).encode()
        make_model(hub, repo, files)
    (root / "data" / "vllm_cache").mkdir(parents=True, exist_ok=True)
    encodings = root / "data" / "encodings"
    encodings.mkdir(parents=True, exist_ok=True)
    for name in ENCODINGS:
        # tiktoken's format: one "base64-token rank" pair a line.
        lines = [f"{hashlib.sha256(f'{name}{i}'.encode()).hexdigest()[:8]} {i}\n" for i in range(256)]
        (encodings / f"{name}.tiktoken").write_text("".join(lines), encoding="utf-8")
    return root
