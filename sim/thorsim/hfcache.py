"""Fake Hugging Face hub cache entries, laid out exactly as huggingface_hub lays them out.

    hub/models--ORG--NAME/blobs/<sha256 of the content>
    hub/models--ORG--NAME/snapshots/<revision>/<file> -> ../../blobs/<sha256>   (relative symlinks)
    hub/models--ORG--NAME/refs/main                   <revision>

Copies that dereference the links, lose blobs/ or refs/ break in the same ways as with a real cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

DEFAULT_REVISION = "c1899de289a04d12100db370d81485cdf75e47ca"
WEIGHT_BYTES = 4096


def repo_dir(hub_dir: Path, repo_id: str) -> Path:
    return Path(hub_dir) / f"models--{repo_id.replace('/', '--')}"


def safetensors(seed: str, size: int = WEIGHT_BYTES) -> bytes:
    """A valid safetensors file of one uint8 tensor whose bytes derive from `seed`."""
    header = json.dumps(
        {"__metadata__": {"format": "pt"}, "weight": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}
    ).encode()
    header += b" " * (-len(header) % 8)  # the format pads its header to 8 bytes
    digest = hashlib.sha256(seed.encode()).digest()
    return struct.pack("<Q", len(header)) + header + (digest * (size // len(digest) + 1))[:size]


def default_files(repo_id: str) -> dict[str, bytes]:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "vocab_size": 256,
        "max_position_embeddings": 4096,
        "torch_dtype": "bfloat16",
    }
    # Weights differ per repo, so a model cannot pass for another by sharing its blob.
    return {"config.json": json.dumps(config, indent=2).encode(), "model.safetensors": safetensors(repo_id)}


def make_model(
    hub_dir: Path, repo_id: str, files: dict[str, bytes] | None = None, revision: str = DEFAULT_REVISION
) -> Path:
    """Add `files` (default: config.json and a few-KB model.safetensors) as `revision` of `repo_id`.

    refs/main is pointed at `revision`; blobs already present are shared. Returns the snapshot directory.
    """
    repo = repo_dir(hub_dir, repo_id)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, content in (default_files(repo_id) if files is None else files).items():
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        if not blob.exists():
            blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(blob, link.parent)
        # Left alone when already right, so that a source made again keeps its mtimes (and copies stay current).
        if not (link.is_symlink() and os.readlink(link) == target):
            link.unlink(missing_ok=True)
            link.symlink_to(target)
    (repo / "refs").mkdir(exist_ok=True)
    ref = repo / "refs" / "main"
    if not ref.exists() or ref.read_text() != revision:
        ref.write_text(revision)  # huggingface_hub writes it without a newline
    return snapshot
