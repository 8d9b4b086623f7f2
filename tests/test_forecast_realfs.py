"""The real scenario: the real filesystem collector on a loop-mounted ext4 image filled at a controlled rate, and
the forecaster must raise a forecast before the filesystem is full, predicting when it will be."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

from augur.config import Config
from collectors.host import HostCollector
from jobs import steps
from jobs.forecasting import Forecaster
from schemas import series
from tests.ebpf_support import loop_mounted_ext4, require_root

RATE_BYTES_S = 3 << 20
CHUNK = 256 << 10
SAMPLE_S = 0.25
# forecasting at the scale of this test: 1 s steps, 4 s of history, "soon" = within a minute
FAST = {"forecast.step-ms": 1000, "forecast.min-history-ms": 4000, "forecast.recent-ms": 2000,
        "forecast.horizon-ms": 60_000, "forecast.history-steps": 120}


@pytest.fixture
def small_fs(tmp_path):
    require_root("mount a loop device")
    with loop_mounted_ext4(tmp_path, 48, "-m", "0") as mnt:  # no reserved blocks: full means full
        yield mnt


def fill(path, stop: threading.Event, done: dict) -> None:
    """Write at RATE_BYTES_S (fsync'd chunks) until the filesystem is full."""
    chunk = os.urandom(CHUNK)
    start = time.monotonic()
    written = 0
    with open(path / "fill.bin", "wb") as f:
        while not stop.is_set():
            try:
                f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                done["full_ms"] = time.time_ns() // 1_000_000
                return
            written += CHUNK
            delay = start + written / RATE_BYTES_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def test_forecast_raised_before_a_real_filesystem_fills_up(small_fs):
    collector = HostCollector(Config(), "realfs-host", with_ebpf=False)
    forecaster = Forecaster.from_config(Config(FAST))
    state = forecaster.init_state()
    stop, done = threading.Event(), {}
    writer = threading.Thread(target=fill, args=(small_fs, stop, done), daemon=True)
    writer.start()
    forecasts = []
    try:
        deadline = time.monotonic() + 60
        while "full_ms" not in done and time.monotonic() < deadline:
            now = time.time_ns() // 1_000_000
            for s in collector.collect(now, int(SAMPLE_S * 1000)):
                if s["metric"] == "system.filesystem.usage" and s["attrs"]["mountpoint"] == str(small_fs):
                    sid = series.series_id(s["host"], s["metric"], s["attrs"])
                    feature = steps.features_record(sid, now - int(SAMPLE_S * 1000), now, [s])
                    _, rec = forecaster.update(state, feature)
                    if rec:
                        forecasts.append(rec)
            time.sleep(SAMPLE_S)
    finally:
        stop.set()
        writer.join(10)
        collector.close()
    assert "full_ms" in done, "the filesystem did not fill up within a minute"
    full = done["full_ms"]
    raised = [r for r in forecasts if r["state"] == "active"]
    assert raised, "no forecast before the filesystem was full"
    first = raised[0]
    lead_s = (full - first["ts"]) / 1000
    error_s = abs(first["exhaustion_ts"] - full) / 1000
    print(f"first forecast {lead_s:.1f} s before full; predicted {error_s:.1f} s off; {first['explanation']}")
    assert lead_s >= 3, f"raised only {lead_s:.1f} s before the filesystem was full"
    assert error_s <= 0.5 * lead_s, f"first prediction {error_s:.1f} s off with {lead_s:.1f} s to go"
    assert first["exhaustion_lower_ts"] <= first["exhaustion_ts"]
