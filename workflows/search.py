"""The search attributes operators filter on in the Temporal Web UI (never personal data)."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

BOOKING_STATUS = SearchAttributeKey.for_keyword("BookingStatus")
BOOKING_STEP = SearchAttributeKey.for_keyword("BookingStep")
NEEDS_ATTENTION = SearchAttributeKey.for_bool("NeedsAttention")
CUSTOMER_REF = SearchAttributeKey.for_keyword("CustomerRef")
SUPPLIERS = SearchAttributeKey.for_keyword_list("Suppliers")
TOTAL_MINOR = SearchAttributeKey.for_int("TotalMinor")

ALL = (BOOKING_STATUS, BOOKING_STEP, NEEDS_ATTENTION, CUSTOMER_REF, SUPPLIERS, TOTAL_MINOR)
