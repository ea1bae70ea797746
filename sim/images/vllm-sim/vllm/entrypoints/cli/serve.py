from vllm_sim import ServeSubcommand

__all__ = ["ServeSubcommand"]
