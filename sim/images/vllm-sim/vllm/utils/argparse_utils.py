from vllm_sim import FlexibleArgumentParser

__all__ = ["FlexibleArgumentParser"]
