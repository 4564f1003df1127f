"""Build orchestration: a recipe becomes stages, stages become bundles and store records; the build's shared state
and builds in a child process."""
