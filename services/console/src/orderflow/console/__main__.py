"""``python -m orderflow.console`` runs the console; ``rebuild`` empties its read model and replays
every topic from the beginning; ``hash-password`` prints a password hash for
``ORDERFLOW_CONSOLE_USERS``."""

import sys

from orderflow.console.app import create_service
from orderflow.console.auth import ConsoleConfigurationError, check_configuration
from orderflow.console.commands import run_command
from orderflow.console.settings import ConsoleSettings
from orderflow.runtime.service import main

if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(run_command(sys.argv[1:]))
    try:  # before connecting to anything: no operators outside the dev stack, no console
        check_configuration(ConsoleSettings())
    except ConsoleConfigurationError as exc:
        print(f"orderflow console: {exc}", file=sys.stderr)
        sys.exit(2)
    main(create_service())
