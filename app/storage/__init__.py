"""Object storage behind one interface: a local folder (default) or S3/R2."""
