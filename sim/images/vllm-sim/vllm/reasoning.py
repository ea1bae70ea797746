from vllm_sim import ReasoningParserManager

__all__ = ["ReasoningParserManager"]
