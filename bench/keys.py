"""make bench-keys: a 1,000-key roster on one litellm-sim (over a real PostgreSQL), issued two ways.

- thorfleet.llm.litellm_key: one task with the whole roster (`keys:`), bounded concurrency;
- the pattern public playbooks use: one ansible.builtin.uri task per key (POST /key/generate), with
  400 ("alias already exists") accepted so that a re-run does not fail.

Each gets a fresh database and litellm-sim, a first run and a no-op re-run, from the controller over
loopback. Prints both times side by side and their ratio.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "sim" / "tests"), str(REPO / "tests"), str(REPO / "sim")]

# The harness litellm-sim's own tests (and the contract tests) run it with.
import litellm_harness as harness  # noqa: E402
import playbook  # noqa: E402

KEYS = int(os.environ.get("BENCH_KEYS", "1000"))
CONCURRENCY = 16
SETTINGS = {"models": [harness.MODEL], "rpm_limit": 10, "tpm_limit": 50000, "max_parallel_requests": 2}
SETTINGS |= {"max_budget": 5.0, "budget_duration": "30d"}

MODULE_PLAY = """
- name: One task, the whole roster
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Reconcile every key
      thorfleet.llm.litellm_key:
        api_url: "{{ bench_url }}"
        master_key: "{{ bench_master_key }}"
        keys: "{{ bench_keys }}"
        concurrency: "{{ bench_concurrency }}"
      no_log: true
"""

URI_PLAY = """
- name: One uri task per key
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Generate the key
      ansible.builtin.uri:
        url: "{{ bench_url }}/key/generate"
        method: POST
        headers:
          Authorization: "Bearer {{ bench_master_key }}"
        body_format: json
        body: "{{ item }}"
        status_code: [200, 400]
      register: generated
      changed_when: generated.status == 200
      loop: "{{ bench_keys }}"
      no_log: true
"""


def roster() -> list[dict]:
    return [
        {"key_alias": f"attendee-{n:04d}", "key": "sk-" + secrets.token_urlsafe(24), **SETTINGS}
        for n in range(1, KEYS + 1)
    ]


def run_play(play: Path, extra: Path) -> float:
    return playbook.timed(str(play), "-i", "localhost,", "-c", "local", "-e", f"@{extra}")[0]


def stored(sim: harness.Sim) -> int:
    return sim.query('SELECT count(*) AS n FROM "LiteLLM_VerificationToken"')[0]["n"]


def measure(name: str, play_text: str, keys: list[dict], server: str, workdir: Path) -> tuple[float, float]:
    """First run and no-op re-run of one play against its own litellm-sim and database."""
    play = workdir / f"{name}.yml"
    play.write_text(play_text)
    with ExitStack() as stack:
        database = stack.enter_context(harness.database(server))
        simdir = workdir / name
        simdir.mkdir()
        sim = stack.enter_context(harness.litellm_sim(simdir, harness.DEAD_API_BASE, database))
        extra = workdir / f"{name}-vars.json"
        extra.write_text(
            json.dumps(
                {
                    "bench_url": sim.url,
                    "bench_master_key": harness.MASTER_KEY,
                    "bench_keys": keys,
                    "bench_concurrency": CONCURRENCY,
                    "ansible_python_interpreter": sys.executable,
                }
            )
        )
        extra.chmod(0o600)
        first = run_play(play, extra)
        if stored(sim) != len(keys):
            sys.exit(f"{name}: {stored(sim)} keys stored after the first run, not {len(keys)}")
        again = run_play(play, extra)
        if stored(sim) != len(keys):
            sys.exit(f"{name}: {stored(sim)} keys stored after the re-run, not {len(keys)}")
        print(f"  {name}: first run {first:.1f} s, re-run {again:.1f} s", flush=True)
        return first, again


def main() -> None:
    keys = roster()
    print(f"bench-keys: {KEYS} keys on one litellm-sim over PostgreSQL, from the controller over loopback", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as tmp, harness.postgres_server() as server:
        workdir = Path(tmp)
        module = measure("litellm_key", MODULE_PLAY, keys, server, workdir)
        uri = measure("uri_per_key", URI_PLAY, keys, server, workdir)
    print()
    print(f"{'':34}{'first run':>12}{'no-op re-run':>15}")
    print(f"{'litellm_key, one task (bulk)':34}{module[0]:>10.1f} s{module[1]:>13.1f} s")
    print(f"{'uri, one task per key':34}{uri[0]:>10.1f} s{uri[1]:>13.1f} s")
    print(f"{'ratio uri / litellm_key':34}{uri[0] / module[0]:>11.1f}x{uri[1] / module[1]:>14.1f}x")


if __name__ == "__main__":
    main()
