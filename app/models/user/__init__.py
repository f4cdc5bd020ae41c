"""Models of a tenant schema (`user_<id>`); they declare no schema on purpose."""
