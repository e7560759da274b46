"""Orders: what the customer bought, where it goes, and where its payment stands."""
