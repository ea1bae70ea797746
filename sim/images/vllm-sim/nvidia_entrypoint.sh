#!/bin/sh
# Like NGC's entrypoint: a banner, then the command the container was given (here `vllm serve ...`).
echo "== vLLM (vllm-sim, a thorfleet stand-in for NVIDIA's nvcr.io/nvidia/vllm:26.10-py3, vLLM 0.31.0) =="
exec "$@"
