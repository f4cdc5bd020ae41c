"""HTTP edge: routers, dependencies and error mapping."""
