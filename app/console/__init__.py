"""The operator console: one server-rendered page that shows and drives the migration."""
