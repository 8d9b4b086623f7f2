"""Jobs: the streaming job (PyFlink) and batch pipelines, wiring sources -> steps -> sinks."""
