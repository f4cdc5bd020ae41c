"""Products and their images."""
