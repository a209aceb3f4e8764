"""Reports on runs: plots."""
