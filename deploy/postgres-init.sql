-- Unleash keeps its state in its own database on the same server.
CREATE DATABASE unleash OWNER stoflow;
