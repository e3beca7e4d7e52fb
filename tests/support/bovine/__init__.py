"""bovine-herd as a real third-party peer for interop tests (see harness.py)."""
