"""``augur bench forecast``: the forecaster and the predict_linear rule side by side on the scenario suite.

Prints the comparison table (lead time, false alerts, errors at several horizons, retraction delay), the
kernel's throughput, and the line ``BENCH forecast lead_time_ratio=... false_alerts=.../baseline=... missed=...
forecasts_per_s=...``. ``lead_time_ratio`` is our total lead time over the baseline's on the scenarios both
alerted on; ``forecasts_per_s`` is full-history fits per second on one core (each resource is refit once per
step, every 20 minutes by default).
"""

from __future__ import annotations

import argparse
import time

from augur import forecast_eval as ev
from augur.config import Config, parse_set_args
from collectors.resource_scenarios import SCENARIOS
from jobs.forecasting import Forecaster


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="augur bench forecast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a forecast.* option")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of the throughput measurement")
    args = parser.parse_args(argv)
    forecaster = Forecaster.from_config(Config(parse_set_args(args.set)))
    t0 = time.perf_counter()
    results = ev.compare(forecaster, SCENARIOS)
    elapsed = time.perf_counter() - t0
    print(ev.table(results))
    print("\nscenarios:")
    for sc, *_ in results:
        truth = ("fills up" if sc.exhaustion_ts else "stops growing" if sc.stops_growing_at_h else "must not alert")
        print(f"  {sc.name:<22} {sc.days:>4g} d  {truth}: {sc.description}")
    s = ev.summary(results)
    print(f"\nlead time (h, summed over exhaustions): ours {s['lead_h']:.1f}, predict_linear {s['base_lead_h']:.1f}")
    print(f"false alerts: ours {s['false_alerts']} ({s['false_per_day']:.3f}/scenario-day), predict_linear "
          f"{s['base_false_alerts']} ({s['base_false_per_day']:.3f}/scenario-day)")
    print(f"missed exhaustions: ours {s['missed']}, predict_linear {s['base_missed']}")
    print(f"suite replayed in {elapsed:.1f} s (both methods, including compilation)")
    per_s = ev.throughput(forecaster, seconds=args.seconds)
    hosts = per_s * forecaster.step_ms / 1000 / 10
    print(f"kernel: {per_s:,.0f} full-history fits/s on one core ({forecaster.history_steps} steps of history): "
          f"every {forecaster.step_ms / 60000:g} min it can refit ~{hosts:,.0f} hosts x 10 resources")
    print(f"BENCH forecast lead_time_ratio={s['lead_time_ratio']:.2f} false_alerts={s['false_alerts']}/"
          f"baseline={s['base_false_alerts']} missed={s['missed']} forecasts_per_s={per_s:.0f}")
    return 0
