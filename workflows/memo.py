"""The booking workflow's memo keys: what the API writes at start and the workflow carries on.

The API starts a booking with all three; the workflow keeps the view current and carries the
whole memo over a continue-as-new, so the hashes stay with the booking for its repeats and reads.
"""

from __future__ import annotations

#: The booking's view (workflows.state.initial_view at start, then the workflow's own).
MEMO_VIEW = "view"
#: SHA-256 of the canonical start request: a repeat with another body is told apart from a retry.
MEMO_REQUEST_HASH = "request_hash"
#: SHA-256 of the booking's access token (the token itself is never stored).
MEMO_ACCESS_TOKEN_HASH = "access_token_hash"
