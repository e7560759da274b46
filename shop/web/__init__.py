"""HTTP plumbing shared by every domain: templates, language, errors, security headers."""
