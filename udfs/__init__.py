"""Pure numerical kernels (numba/NumPy) shared by the stream, the backfill and the CLI.

Nothing here imports Kafka, Flink, Beam or torch: kernels take arrays and explicit state, and return arrays.
"""
