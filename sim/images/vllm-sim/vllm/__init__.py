"""vllm-sim's stand-in for the `vllm` package: what checking a command line needs, at vLLM 0.31.0's import paths.

roles/vllm_server/files/vllm_check.py imports these on NVIDIA's image and on vllm-sim's alike; the rules behind
them are vllm_sim's (the module beside this package). Subpackages are namespace packages: only the modules
the check imports exist.
"""

from vllm_sim import VERSION as __version__

__all__ = ["__version__"]
