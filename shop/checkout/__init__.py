"""Checkout: the customer's details and Kuwaiti delivery address, then payment."""
