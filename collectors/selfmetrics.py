"""The collectors' own health: counters published as telemetry and on a Prometheus text endpoint, so that lost
kernel events, dropped samples and suppressed events are never silent."""

from __future__ import annotations

import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SelfMetrics:
    """Monotonic counters keyed by (name, label tuple); ``delta`` tells what changed since the last publication."""

    def __init__(self):
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, tuple], float] = defaultdict(float)
        self._published: dict[tuple[str, tuple], float] = {}

    def add(self, name: str, value: float, **labels: str) -> None:
        if value:
            with self._lock:
                self._totals[(name, tuple(sorted(labels.items())))] += value

    def set_total(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._totals[(name, tuple(sorted(labels.items())))] = value

    def deltas(self) -> list[tuple[str, dict, float]]:
        with self._lock:
            out = []
            for key, total in self._totals.items():
                d = total - self._published.get(key, 0.0)
                self._published[key] = total
                out.append((key[0], dict(key[1]), d))
            return out

    def prometheus_text(self) -> str:
        with self._lock:
            items = sorted(self._totals.items())
        lines, typed = [], set()
        for (name, labels), total in items:
            metric = "augur_collector_" + name.replace(".", "_") + "_total"
            if metric not in typed:
                lines.append(f"# TYPE {metric} counter")
                typed.add(metric)
            lab = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{metric}{{{lab}}} {total:g}" if lab else f"{metric} {total:g}")
        return "\n".join(lines) + "\n"


def serve_prometheus(metrics: SelfMetrics, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve ``/metrics`` in a daemon thread; returns the server (``.shutdown()`` to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.rstrip("/") != "/metrics":
                self.send_error(404)
                return
            body = metrics.prometheus_text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="prometheus", daemon=True).start()
    return server
