"""Application services: the use cases, between the edges and the repositories."""
