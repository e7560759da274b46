"""The staff area: its own accounts, roles, pages and audit log, changing state only through shop services."""
