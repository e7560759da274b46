"""Customer emails through an outbox table, so a receipt is never lost to an SMTP hiccup."""
