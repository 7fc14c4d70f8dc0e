"""OrderFlow notify service."""
