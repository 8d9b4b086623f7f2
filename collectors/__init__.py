"""Telemetry sources: eBPF collectors (root) and the seeded synthetic generator (anywhere), with shared outputs."""
