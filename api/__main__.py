"""`python -m api`: serve the API with uvicorn on PASSAGE_API_HOST:PASSAGE_API_PORT.

Defaults to 127.0.0.1:8000; every other setting comes from the environment (passage/settings.py).
"""

from __future__ import annotations

import os
import sys

import uvicorn

from passage import logs
from passage.settings import Settings


def main() -> None:
    logs.configure(os.environ.get("PASSAGE_LOG_LEVEL", "INFO"))
    Settings.for_process("the API")  # refuse to start on missing or placeholder secrets
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=os.environ.get("PASSAGE_API_HOST", "127.0.0.1"),
        port=int(os.environ.get("PASSAGE_API_PORT", "8000")),
        log_level=os.environ.get("PASSAGE_LOG_LEVEL", "INFO").lower(),
        proxy_headers=False,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # sdk-python issue 300: avoid a crash at interpreter exit (as worker.py does)


if __name__ == "__main__":
    main()
