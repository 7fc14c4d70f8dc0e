"""OrderFlow logistics service."""
