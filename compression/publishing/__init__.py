"""Publishing: write a published run (bundles, results, model cards, manifest) and open one read-only."""
