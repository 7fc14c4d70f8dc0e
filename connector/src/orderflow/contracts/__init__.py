"""OrderFlow contracts: topics, events, the canonical order, money. Shared by every service."""
