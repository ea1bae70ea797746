# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""Timing one streamed completion and summing many up: shared by the llm_benchmark module (on the unit)
and the benchmark_rows filter (on the controller), so that a unit's and the fleet's figures agree."""

from __future__ import annotations

import http.client
import json
import threading
import time

# What a request can fail with: refused, reset, timed out, an HTTP error, a broken or empty stream.
REQUEST_ERRORS = (OSError, ValueError, KeyError, TypeError, http.client.HTTPException)
# What each sample is summarised by, in the order reports show them.
METRICS = ("ttft_s", "tokens_per_s", "e2e_s")


def percentile(values, q):
    """The q-th percentile (0..100) by linear interpolation between the nearest ranks, as numpy's default;
    None for no values."""
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values):
    """Median, 95th percentile, lowest and highest of `values` (None where there are none)."""
    present = [v for v in values if v is not None]
    return dict(
        median=percentile(present, 50),
        p95=percentile(present, 95),
        min=min(present, default=None),
        max=max(present, default=None),
        n=len(present),
    )


def summarize_samples(samples, trials):
    """The summary of every metric over `samples`, and of per-trial throughput over `trials`."""
    summary = {metric: summarize(sample[metric] for sample in samples) for metric in METRICS}
    summary["throughput_tokens_per_s"] = summarize(trial["throughput_tokens_per_s"] for trial in trials)
    return summary


def content_of(chunk):
    """The text a streamed chunk adds: its content, or a reasoning model's reasoning, which comes first."""
    text = ""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        text += "".join(str(delta.get(k) or "") for k in ("reasoning_content", "reasoning", "content"))
    return text


def timed_stream(lines, started):
    """Read a streamed completion's server-sent events (`lines`, bytes) sent at perf_counter `started`.
    Returns ttft_s, e2e_s, prompt_tokens and completion_tokens (from the usage chunk, else counted chunks),
    tokens_per_s (decode rate after the first token) and whether the stream ended with [DONE]."""
    first = None
    chunks = 0
    usage = None
    done = False
    for raw in lines:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            done = True
            break
        chunk = json.loads(data)
        if chunk.get("error"):
            raise ValueError(f"the stream carried an error: {chunk['error']}")
        if content_of(chunk):
            chunks += 1
            if first is None:
                first = time.perf_counter()
        if chunk.get("usage"):
            usage = chunk["usage"]
    end = time.perf_counter()
    completion = int(usage["completion_tokens"]) if usage else chunks
    ttft = None if first is None else first - started
    decode = end - first if first is not None else 0.0
    return dict(
        ttft_s=ttft,
        e2e_s=end - started,
        prompt_tokens=int(usage["prompt_tokens"]) if usage else None,
        completion_tokens=completion,
        tokens_counted="usage" if usage else "chunks",
        # Decode rate: the tokens after the first over the time after the first (vLLM's 1/TPOT).
        tokens_per_s=(completion - 1) / decode if completion > 1 and decode > 0 else None,
        done=done,
    )


def run_trials(send, trials, concurrency):
    """Call send() `concurrency` times at once (a barrier starts them together), `trials` times over.
    send() returns a sample dict or raises; returns (samples, trials, errors)."""
    samples, trial_rows, errors = [], [], []
    for trial in range(1, trials + 1):
        barrier = threading.Barrier(concurrency)
        results = [None] * concurrency

        def one(index, trial=trial, barrier=barrier, results=results):
            barrier.wait()
            try:
                results[index] = dict(send(), trial=trial, index=index)
            except REQUEST_ERRORS as exc:
                results[index] = dict(trial=trial, index=index, error=str(exc))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrency)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        good = [r for r in results if "error" not in r]
        errors.extend(r for r in results if "error" in r)
        samples.extend(good)
        tokens = sum(r["completion_tokens"] for r in good)
        trial_rows.append(
            dict(
                trial=trial,
                wall_s=wall,
                completion_tokens=tokens,
                throughput_tokens_per_s=tokens / wall if wall else None,
            )
        )
    return samples, trial_rows, errors
