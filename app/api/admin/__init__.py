"""Operator endpoints (admin token)."""
