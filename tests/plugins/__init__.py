"""pytest plugins that inject faults into a ``pytest benchmarks`` subprocess (loaded with -p)."""
