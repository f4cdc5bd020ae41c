"""Feature flags (Unleash): per-tenant read switch, shadow comparison, interlocks (issue 5)."""
