"""`python -m api`: serve the API with uvicorn on PASSAGE_API_HOST:PASSAGE_API_PORT.

Defaults to 127.0.0.1:8000; every setting comes from the environment (passage/settings.py).
"""

from __future__ import annotations

import os
import sys

import uvicorn

from api.app import create_app
from passage import logs
from passage.settings import Settings


def main() -> None:
    # Refuse to start on a missing, malformed or placeholder setting, naming its variable.
    settings = Settings.for_process("the API")
    logs.configure(settings.log_level, json=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's records go through passage.logs (format, request id)
        proxy_headers=False,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # sdk-python issue 300: avoid a crash at interpreter exit (as worker.py does)


if __name__ == "__main__":
    main()
