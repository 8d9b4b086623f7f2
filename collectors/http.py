"""HTTP server requests (bpf/http.bpf.c): rate, latency histogram and status classes per service and
normalised route, for plain HTTP/1.x servers in any language, with no change to the application.

The kernel side watches the packets of accepted sockets (sock_ops and cgroup_skb programs on the cgroup v2
root, or on the groups of ``collect.http-cgroups``), where no process is current, so a request is keyed by its
server socket's cgroup and local port: the service is the cgroup's name or, for a process in the root or a generic
cgroup, the command of the process listening on that port."""

from __future__ import annotations

import ctypes
import re

from augur.config import Config
from collectors import samples
from collectors.base import Collector
from collectors.bpf_loader import BpfProgram, hist_slots
from collectors.enrich import CgroupNames, ListeningPorts, service_name
from collectors.quiet_counts import QuietCounts
from schemas import series

PRODUCER = samples.producer("augur-collector-http")
METHODS = {0: "_OTHER", 1: "GET", 2: "POST", 3: "PUT", 4: "DELETE", 5: "HEAD", 6: "PATCH", 7: "OPTIONS"}
OTHER_ROUTE = "/{other}"
RATE_WINDOW_MS = 10  # the kernel counts each CPU's requests per window of this length (collect.http-exact-rate)
_ID_SEGMENT = re.compile(r"(?<=/)[^/]*0[^/]*(?=/|$)")  # a segment that held digits (folded to '0' in the kernel)
_HEXISH = re.compile(r"(?<=/)[0-9a-fA-F-]{16,}(?=/|$)")


def normalise_route(raw: str) -> str:
    """``/users/0/orders`` -> ``/users/{id}/orders``; long hex-like segments become ``{id}`` too."""
    route = _HEXISH.sub("{id}", raw or "/")
    route = _ID_SEGMENT.sub("{id}", route)
    return route if route.startswith("/") else "/" + route


class RouteCap:
    """At most ``limit`` distinct routes per service; later newcomers are reported as ``/{other}``."""

    def __init__(self, limit: int):
        self.limit = limit
        self.known: dict[str, set[str]] = {}

    def __call__(self, service: str, route: str) -> str:
        routes = self.known.setdefault(service, set())
        if route in routes:
            return route
        if len(routes) >= self.limit:
            return OTHER_ROUTE
        routes.add(route)
        return route


class HttpCollector(Collector):
    name = "http"

    def __init__(self, cfg: Config, host: str, cgroups: CgroupNames | None = None, max_routes: int = 64):
        self.host = host
        self.cgroups = cgroups or CgroupNames()
        self.routes = RouteCap(max_routes)
        self.ports = ListeningPorts()
        self.prog = BpfProgram("http", {"MAX_KEYS": cfg["collect.max-keys"],
                                        "RATE_WINDOW_NS": RATE_WINDOW_MS * 1_000_000,
                                        "EXACT_PER_WINDOW": cfg["collect.http-exact-rate"] * RATE_WINDOW_MS // 1000,
                                        "SAMPLE_EVERY": cfg["collect.http-sample-every"]},
                               cgroup_links={"http_sockops": "sock_ops", "http_ingress": "ingress",
                                             "http_egress": "egress"},
                               cgroups=cfg["collect.http-cgroups"])
        self._untimed_seen = 0
        self.quiet = QuietCounts(PRODUCER, host, cfg["collect.zero-fill-ms"], cfg["collect.max-keys"])

    def service(self, cgroup_id: int, port: int) -> str:
        path = self.cgroups.path(cgroup_id)
        name = service_name(path)
        if path in ("/", "") or name in ("/", "user", "init") or name.startswith("cgroup-"):
            # processes in the root or a generic cgroup are named by their command instead
            return self.ports.command(port) or f"port-{port}"
        return name

    def collect(self, ts_ms: int, interval_ms: int) -> list[dict]:
        idle = self.prog.flip()
        merged: dict[tuple, tuple[list[int], int]] = {}
        for key, h in self.prog.drain("http", idle):
            service = self.service(key.cgroup_id, key.port)
            route = self.routes(service, normalise_route(key.route.split(b"\0", 1)[0].decode("utf-8", "replace")))
            status = f"{key.status_class}xx" if key.status_class else "unknown"
            k = (service, METHODS.get(key.method, "_OTHER"), route, status)
            slots, total = hist_slots(h)
            if k in merged:
                old, old_total = merged[k]
                slots = [a + b for a, b in zip(old, slots)]
                total += old_total
            merged[k] = (slots, total)
        out = []
        for (service, method, route, status), (slots, total) in merged.items():
            hist = samples.hist_from_slots(slots, total)
            if not hist:
                continue
            attrs = {"service": service, "http.request.method": method, "http.route": route,
                     series.HTTP_STATUS_CLASS: status}
            out.append(samples.sample(PRODUCER, self.host, ts_ms, interval_ms, "http.server.request.duration",
                                      "histogram", "us", attrs, hist=hist))
            out.append(samples.sample(PRODUCER, self.host, ts_ms, interval_ms, "http.server.requests", "delta",
                                      "{request}", attrs, value=hist["count"]))
            for other in series.HTTP_STATUS_CLASSES:  # declared: a route with traffic reports all of them
                self.quiet.declare(ts_ms, "http.server.requests", "{request}",
                                   dict(attrs, **{series.HTTP_STATUS_CLASS: other}))
        return self.quiet.fill(out, ts_ms, interval_ms)

    def health(self) -> dict[str, int]:
        # requests not timed under load: stood for by the sampled requests' weights, not lost
        untimed = sum(int(r.untimed) for r in self.prog.bpf["request_rates"][ctypes.c_int(0)])
        delta, self._untimed_seen = untimed - self._untimed_seen, untimed
        return {**super().health(), "http.untimed": delta}
