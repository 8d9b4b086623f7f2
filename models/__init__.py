"""Offline model training and export to plain-array artifacts that udfs/ kernels score (see issue: ensemble)."""
