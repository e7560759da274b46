"""The reliability and security proof: cases that drive real `shop serve` processes and their
provider sandboxes over HTTP, each printing figures checked against fixed targets.

Run it with `./scripts/torture` (or `python -m torture` from the repository root)."""
