"""The HTTP shapes of the API, one module per resource: request bodies (validated here, once)
and responses.

Pydantic lives only here and in settings; the domain (`workflows.model`, `workflows.contracts`) is
frozen dataclasses, and each shape's `of`/`to_...` methods translate between the two. Import
from the submodules: `fields` (types and limits every body shares), `bookings` (the checkout and
the customer's view), `admin` (staff), `webhooks`, `codec`, `health`, `errors`, and `examples`
(the OpenAPI examples too large to sit beside their fields).
"""
