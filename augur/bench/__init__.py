"""Benchmarks: ``augur bench NAME``. Each prints its table and ends with one line ``BENCH NAME key=value ...``,
with ratios against a baseline measured in the same run (never absolute limits)."""

from __future__ import annotations

from typing import Callable


def _overhead(argv: list[str]) -> int:
    from augur.bench.overhead import main
    return main(argv)


def _forecast(argv: list[str]) -> int:
    from augur.bench.forecast import main
    return main(argv)


def _backfill(argv: list[str]) -> int:
    from augur.bench.backfill import main
    return main(argv)


def _kernels(argv: list[str]) -> int:
    from augur.bench.kernels import main
    return main(argv)


def _pipeline(argv: list[str]) -> int:
    from augur.bench.pipeline import main
    return main(argv)


BENCHMARKS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "overhead": (_overhead, "collectors' cost on a loopback HTTP workload (nginx + wrk), with vs without"),
    "backfill": (_backfill, "a day of 1,000 series through augur backfill (Beam), vs the streaming job"),
    "kernels": (_kernels, "ensemble scoring points/s, batch and per point, vs plain Python, River and sklearn"),
    "pipeline": (_pipeline, "raw samples/s through the JVM windows vs a Python call per sample, scored/s, "
                            "end-to-end latency"),
    "forecast": (_forecast, "exhaustion forecasts vs node-exporter's predict_linear rule on the scenario suite"),
}
