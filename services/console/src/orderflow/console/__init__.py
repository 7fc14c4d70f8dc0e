"""OrderFlow console service."""
