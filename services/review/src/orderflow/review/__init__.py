"""OrderFlow review service."""
