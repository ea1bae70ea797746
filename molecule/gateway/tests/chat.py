"""One chat completion, as a client sees it: the units' LiteLLM over HTTP, or the gateway's through nginx over TLS."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time

MODEL = "Qwen3-VL-30B-A3B"


def connection(address: str, port: int, ca: str | None = None, timeout: float = 60) -> http.client.HTTPConnection:
    """HTTP to `address`:`port`, or HTTPS verified against the CA certificate `ca`."""
    if ca is None:
        return http.client.HTTPConnection(address, port, timeout=timeout)
    return http.client.HTTPSConnection(address, port, timeout=timeout, context=ssl.create_default_context(cafile=ca))


def chat(connect, key: str, max_tokens: int = 4, stream: bool = False) -> dict:
    """One chat completion over `connect()` (a new connection); for a stream, whether it ran to [DONE] with every
    token. The record: start, end, ok, status, the deployment that served it (LiteLLM's x-litellm-model-id: on the
    gateway, the unit), tokens, error."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "roll on"}], "max_tokens": max_tokens}
    record = {"start": time.time(), "ok": False, "stream": stream}
    conn = connect()
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            json.dumps({**body, "stream": stream}),
            {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        response = conn.getresponse()
        # The server has taken the request up once its response begins; before that, a request still
        # in the listening socket's queue when LiteLLM stops is reset, as with any server that drains.
        record.update(status=response.status, responded=time.time(), served_by=response.getheader("x-litellm-model-id"))
        if not stream:
            answer = json.loads(response.read())
            record["ok"] = response.status == 200 and bool(answer["choices"][0]["message"]["content"])
        else:
            tokens, done = 0, False
            for line in response:
                data = line.decode().strip().removeprefix("data: ")
                if data == "[DONE]":
                    done = True
                elif data.startswith("{"):
                    event = json.loads(data)
                    if "error" in event:
                        record["error"] = str(event["error"])[:200]
                    tokens += sum(1 for c in event.get("choices", []) if c["delta"].get("content"))
            record.update(tokens=tokens, ok=response.status == 200 and done and tokens == max_tokens)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        record["error"] = repr(exc)
    finally:
        conn.close()
    record["end"] = time.time()
    return record


class Traffic:
    """Clients that each ask again and again until the block ends, every answer recorded with the client's label.
    A client: (label, connect, key, max_tokens, stream, offset in seconds before its first request)."""

    def __init__(self, clients):
        self.records: list[dict] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=client, daemon=True) for client in clients]

    def _run(self, label, connect, key, max_tokens, stream, offset) -> None:
        self.stop.wait(offset)
        while not self.stop.is_set():
            record = chat(connect, key, max_tokens, stream)
            self.records.append({**record, "unit": label})
            if not record["ok"]:
                time.sleep(0.2)  # a unit being updated refuses connections; do not spin on it

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(90)
