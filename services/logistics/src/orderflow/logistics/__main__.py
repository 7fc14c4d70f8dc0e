import sys

from pydantic import ValidationError

from orderflow.logistics.app import create_service
from orderflow.logistics.settings import CatalogueError, LogisticsSettings
from orderflow.runtime.service import main

if __name__ == "__main__":
    try:
        settings = LogisticsSettings()
        settings.catalogue  # noqa: B018 - load the carrier catalogue now: fail fast on a bad file
    except (ValidationError, CatalogueError) as exc:
        sys.exit(f"logistics: bad configuration: {exc}")
    main(create_service(settings))
