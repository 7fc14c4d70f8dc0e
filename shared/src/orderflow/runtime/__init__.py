"""The runtime every OrderFlow service uses: settings, logging, database, outbox, inbox,
consumers with explicit offset commits, retries, the DLQ, health and metrics."""
