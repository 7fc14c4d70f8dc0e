"""OrderFlow inventory service."""
