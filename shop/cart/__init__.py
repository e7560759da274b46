"""Cart: a server-side basket keyed by a token in the signed session."""
