"""Augur's public message contracts: topics, JSON Schemas, series identity, and the codec that enforces them."""
