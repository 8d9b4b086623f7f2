"""Starting and configuring the real services Augur runs on (Kafka broker, Flink jars, eBPF prerequisites)."""
