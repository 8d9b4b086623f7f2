"""Series identity: ``(host, metric, sorted attributes)`` -> a stable 16-hex-digit ``series_id``.

The id is the first 8 bytes of BLAKE2b over the canonical JSON ``[host, metric, [[k, v], ...]]`` with the
attributes sorted by key and no whitespace; any producer in any language can compute it the same way.
"""

from __future__ import annotations

import hashlib
import json
from typing import Mapping


# The attribute every producer gives an HTTP request count or latency for its status class ("2xx", "5xx", ...,
# "unknown"): OpenTelemetry's name. The host-state job's error ratio reads it.
HTTP_STATUS_CLASS = "http.response.status_class"
# The classes a route's request count is always reported for (as 0 when none), so a first 5xx has a history.
HTTP_STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


def canonical_identity(host: str, metric: str, attrs: Mapping[str, str]) -> bytes:
    items = [[k, attrs[k]] for k in sorted(attrs)]
    return json.dumps([host, metric, items], separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def series_id(host: str, metric: str, attrs: Mapping[str, str]) -> str:
    return hashlib.blake2b(canonical_identity(host, metric, attrs), digest_size=8).hexdigest()


def describe(metric: str, attrs: Mapping[str, str]) -> str:
    """Human-readable series name, e.g. ``http.server.request.duration{route=/api,service=shop}``."""
    if not attrs:
        return metric
    return metric + "{" + ",".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + "}"
