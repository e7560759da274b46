"""Payments: attempts with providers, their event timeline, refunds, reconciliation."""
