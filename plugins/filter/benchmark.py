"""The benchmark's report rows: each unit's runs, and the fleet's, summarised by the same code as the module."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.module_utils._benchmark import summarize_samples

GROUP = ("profile", "case", "concurrency")


def _row(unit, key, samples, trials):
    summary = summarize_samples(samples, trials)

    def ms(metric, stat):
        value = summary[metric][stat]
        return None if value is None else round(value * 1000, 1)

    def rate(metric, stat):
        value = summary[metric][stat]
        return None if value is None else round(value, 1)

    return dict(
        unit=unit,
        **dict(zip(GROUP, key, strict=True)),
        requests=len(samples),
        prompt_tokens=max((s.get("prompt_tokens") or 0 for s in samples), default=0) or None,
        completion_tokens=round(sum(s["completion_tokens"] for s in samples) / len(samples), 1) if samples else None,
        ttft_ms_median=ms("ttft_s", "median"),
        ttft_ms_p95=ms("ttft_s", "p95"),
        tokens_per_s_median=rate("tokens_per_s", "median"),
        tokens_per_s_p95=rate("tokens_per_s", "p95"),
        e2e_ms_median=ms("e2e_s", "median"),
        e2e_ms_p95=ms("e2e_s", "p95"),
        throughput_median=rate("throughput_tokens_per_s", "median"),
    )


def benchmark_rows(runs, fleet=True):
    """One row per unit, profile, case and concurrency, in the order run; then, with `fleet` and more than one
    unit, a `fleet` row for each profile, case and concurrency over every unit's samples."""
    if not isinstance(runs, list):
        raise AnsibleFilterError("benchmark_rows: the input must be a list of runs")
    rows, pooled, units = [], {}, set()
    for run in runs:
        try:
            key = tuple(run[field] for field in GROUP)
            samples, trials, unit = run["samples"], run["trials"], run["unit"]
        except (KeyError, TypeError) as exc:
            raise AnsibleFilterError(
                f"benchmark_rows: a run lacks {exc} (unit, {', '.join(GROUP)}, samples, trials)"
            ) from None
        rows.append(_row(unit, key, samples, trials))
        units.add(unit)
        into = pooled.setdefault(key, ([], []))
        into[0].extend(samples)
        into[1].extend(trials)
    if fleet and len(units) > 1:
        rows.extend(_row("fleet", key, samples, trials) for key, (samples, trials) in pooled.items())
    return rows


class FilterModule:
    def filters(self):
        return {"benchmark_rows": benchmark_rows}
