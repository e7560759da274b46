"""Sandbox tests: the built-in fake provider servers, driven over real HTTP."""
