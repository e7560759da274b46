"""Catalogue: categories and products, in English and Arabic."""
