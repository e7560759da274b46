"""The storefront benchmark: `python -m bench` (see docs/performance.md)."""
