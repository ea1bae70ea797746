from vllm_sim import validate_api_server_args

__all__ = ["validate_api_server_args"]
