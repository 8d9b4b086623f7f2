"""Augur: kernel telemetry in, anomalies and failure forecasts out."""

__version__ = "0.1.0"
