"""``python -m orderflow.devstack.launch <service>``: one service as the dev stack runs it. Its
logging is configured as the runtime does, its priority set (``devstack.priority``: the stack
gives notify and the console a lower one), then the service's own ``__main__`` runs
(``orderflow.runtime.service.main``), exactly as ``python -m orderflow.<service>`` would."""

from __future__ import annotations

import runpy
import sys

from orderflow.devstack.priority import apply_service_priority
from orderflow.runtime.logging import configure_logging
from orderflow.runtime.settings import ServiceSettings, load_settings


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m orderflow.devstack.launch <service>")
    service = args[0]
    settings = load_settings(ServiceSettings, service)
    configure_logging(service, fmt=settings.log_format, level=settings.log_level)
    apply_service_priority(service)
    sys.argv = [f"orderflow.{service}"]
    runpy.run_module(f"orderflow.{service}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
