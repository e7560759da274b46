"""Vendors whose products the shop sells on their behalf, and how a payment is split among them."""
