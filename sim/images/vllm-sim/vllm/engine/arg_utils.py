from vllm_sim import AsyncEngineArgs

__all__ = ["AsyncEngineArgs"]
