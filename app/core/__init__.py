"""Settings, database, logging and security: the app's plumbing."""
