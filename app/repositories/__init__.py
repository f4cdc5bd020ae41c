"""SQL at the edge: every query the services need, in the domain's words."""
