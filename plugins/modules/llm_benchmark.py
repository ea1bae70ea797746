#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports

from __future__ import annotations

DOCUMENTATION = r"""
---
module: llm_benchmark
short_description: Time streamed chat completions on an OpenAI-compatible endpoint
version_added: 0.1.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
description:
  - Sends the same streamed chat completion (C(stream_options.include_usage)) O(trials) times, O(concurrency)
    requests at once each time, and times every request from the moment it is sent - time to first token
    (TTFT), end-to-end latency, and decode rate (tokens after the first over the time after the first token).
  - Summarises each measure by median and 95th percentile, and each trial by its throughput (every
    request's completion tokens over the trial's wall time).
  - Run it on the unit against its LiteLLM, so that the numbers are the model server's and the gateway's,
    not the controller's network.
attributes:
  check_mode:
    support: full
    details:
      - In check mode nothing is sent and no samples are returned.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  api_url:
    description:
      - Base URL of the OpenAI-compatible API (its C(/v1/chat/completions) is called).
    type: str
    default: http://127.0.0.1:12434
  api_key:
    description:
      - Bearer key for the API.
    type: str
    required: true
  model:
    description:
      - The model name to ask.
    type: str
    required: true
  prompt:
    description:
      - The user message. Exactly one of O(prompt) and O(prompt_tokens) is given.
    type: str
  prompt_tokens:
    description:
      - Make the user message of about this many tokens (common words, one token each for most tokenizers);
        RV(samples[].prompt_tokens) says how many the server counted.
    type: int
  max_tokens:
    description:
      - Completion tokens asked for.
    type: int
    default: 128
  temperature:
    description:
      - Sampling temperature, the same on every request.
    type: float
    default: 0.7
  trials:
    description:
      - How many times the requests are sent.
    type: int
    default: 5
  concurrency:
    description:
      - Requests sent at once in each trial.
    type: int
    default: 1
  warmup:
    description:
      - Untimed requests sent first, one at a time (a server's first requests after a start are slower).
    type: int
    default: 1
  timeout:
    description:
      - Seconds one request may take.
    type: int
    default: 600
notes:
  - Fails when any request fails (an HTTP error, a stream cut short or carrying an error), naming the first
    failure; a benchmark with failed requests would compare the wrong things.
seealso:
  - name: The benchmark playbook
    description: thorfleet.llm.benchmark runs this module for every unit, profile, case and concurrency.
    link: https://github.com/thorfleet/llm/blob/main/playbooks/benchmark.yml
"""

EXAMPLES = r"""
- name: Time the seed's fixed prompt five times, eight requests at once
  thorfleet.llm.llm_benchmark:
    api_key: "{{ benchmark_key }}"
    model: Llama-3.1-8B-Instruct-FP8
    prompt: >-
      Write a 5-sentence paragraph explaining the main benefit of using Jetson Thor for an autonomous
      robotics developer.
    max_tokens: 256
    concurrency: 8
  register: timed

- name: Median time to first token
  ansible.builtin.debug:
    msg: "{{ (timed.summary.ttft_s.median * 1000) | round(1) }} ms"
"""

RETURN = r"""
samples:
  description: One entry per timed request.
  returned: success
  type: list
  elements: dict
  contains:
    trial:
      description: The trial, from 1.
      type: int
    index:
      description: The request within its trial, from 0.
      type: int
    ttft_s:
      description: Seconds from sending to the first token (content or reasoning).
      type: float
    e2e_s:
      description: Seconds from sending to the end of the stream.
      type: float
    tokens_per_s:
      description: Decode rate, tokens after the first over the seconds after the first token (null for one token).
      type: float
    prompt_tokens:
      description: Prompt tokens by the server's count (null when it sent no usage).
      type: int
    completion_tokens:
      description: Completion tokens by the server's usage, else streamed chunks counted.
      type: int
    tokens_counted:
      description: C(usage) or C(chunks), where RV(samples[].completion_tokens) came from.
      type: str
trials:
  description: One entry per trial, with its wall time, completion tokens and throughput (tokens per second).
  returned: success
  type: list
  elements: dict
summary:
  description: Median, p95, min, max and count of C(ttft_s), C(tokens_per_s), C(e2e_s) over the samples, and of
    C(throughput_tokens_per_s) over the trials.
  returned: success
  type: dict
  sample: {ttft_s: {median: 0.061, p95: 0.07, min: 0.058, max: 0.071, n: 5}}
"""

import json
import ssl
import time
from urllib.error import HTTPError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import Request
from ansible_collections.thorfleet.llm.plugins.module_utils._benchmark import (
    REQUEST_ERRORS,
    run_trials,
    summarize_samples,
    timed_stream,
)

# Words of one token each in the usual tokenizers, for prompts of a given length.
FILLER = ("the", "robot", "moves", "its", "arm", "to", "pick", "a", "part", "from", "the", "line")
# More requests at once than a unit serves sequences (vLLM's max-num-seqs) only measure its queue.
MAX_CONCURRENCY = 256


def argument_spec():
    return dict(
        api_url=dict(type="str", default="http://127.0.0.1:12434"),
        api_key=dict(type="str", required=True, no_log=True),
        model=dict(type="str", required=True),
        prompt=dict(type="str"),
        # Token counts, not secrets (no_log=False answers validate-modules' guess from the names).
        prompt_tokens=dict(type="int", no_log=False),
        max_tokens=dict(type="int", default=128, no_log=False),
        temperature=dict(type="float", default=0.7),
        trials=dict(type="int", default=5),
        concurrency=dict(type="int", default=1),
        warmup=dict(type="int", default=1),
        timeout=dict(type="int", default=600),
    )


def filler_prompt(tokens):
    return " ".join(FILLER[i % len(FILLER)] for i in range(tokens))


def check(params):
    """The first rule the parameters break, as a message that names the option, or None."""
    rules = (
        ("trials", 1, 10000),
        ("concurrency", 1, MAX_CONCURRENCY),
        ("max_tokens", 1, 1 << 20),
        ("warmup", 0, 100),
        ("timeout", 1, 86400),
    )
    for name, low, high in rules:
        if not low <= params[name] <= high:
            return f"{name} must be between {low} and {high}, not {params[name]}"
    if params["prompt_tokens"] is not None and params["prompt_tokens"] < 1:
        return f"prompt_tokens must be 1 or more, not {params['prompt_tokens']}"
    return None


def sender(params):
    """A function that sends one streamed request and returns its timed sample."""
    url = params["api_url"].rstrip("/") + "/v1/chat/completions"
    prompt = params["prompt"] if params["prompt"] is not None else filler_prompt(params["prompt_tokens"])
    body = json.dumps(
        dict(
            model=params["model"],
            messages=[dict(role="user", content=prompt)],
            max_tokens=params["max_tokens"],
            temperature=params["temperature"],
            stream=True,
            stream_options=dict(include_usage=True),
        )
    )
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {params['api_key']}"}
    # One TLS context for every request: open_url makes a new one each call, some 40 ms of client CPU
    # that would count as the server's time to first token.
    request = Request(context=ssl.create_default_context(), timeout=params["timeout"])

    def send():
        started = time.perf_counter()
        try:
            response = request.open("POST", url, data=body, headers=headers)
        except HTTPError as exc:
            raise ValueError(describe(exc)) from None
        try:
            sample = timed_stream(response, started)
        finally:
            response.close()
        if not sample["done"]:
            raise ValueError("the stream ended without [DONE]")
        if sample["ttft_s"] is None:
            raise ValueError("the stream carried no token")
        del sample["done"]
        return sample

    return send


def describe(error):
    """An HTTP error with the API's own message (OpenAI's error envelope), when it sent one."""
    try:
        detail = json.loads(error.read() or b"{}").get("error", {})
    except (ValueError, AttributeError, OSError):
        return f"HTTP {error.code}"
    return f"HTTP {error.code}: {detail.get('message', detail) if isinstance(detail, dict) else detail}"


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("prompt", "prompt_tokens")],
        required_one_of=[("prompt", "prompt_tokens")],
        supports_check_mode=True,
    )
    params = module.params
    problem = check(params)
    if problem:
        module.fail_json(msg=problem)
    if module.check_mode:
        requests = params["trials"] * params["concurrency"]
        module.exit_json(changed=False, msg=f"would send {params['warmup']} + {requests} requests")
    send = sender(params)
    for _warmup in range(params["warmup"]):
        try:
            send()
        except REQUEST_ERRORS as exc:
            module.fail_json(msg=f"The warm-up request to {params['model']} failed: {exc}")
    samples, trials, errors = run_trials(send, params["trials"], params["concurrency"])
    if errors:
        first = errors[0]
        module.fail_json(
            msg=(
                f"{len(errors)} of {params['trials'] * params['concurrency']} requests to {params['model']} failed; "
                f"the first (trial {first['trial']}): {first['error']}"
            ),
            samples=samples,
        )
    module.exit_json(changed=False, samples=samples, trials=trials, summary=summarize_samples(samples, trials))


if __name__ == "__main__":
    main()
