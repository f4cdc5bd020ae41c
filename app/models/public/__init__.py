"""Models of the shared `public` schema."""
