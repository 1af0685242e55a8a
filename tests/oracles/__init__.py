"""Test oracles: deliberately simple executors that the package is checked against (not installed)."""
