"""Evaluation: metrics (``evaluate`` modules shipped in the package), the benchmark with provenance, result rows,
the advisor and the load test."""
