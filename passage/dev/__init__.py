"""Passage's development harness, not shipped to production: `make up`'s launcher (a generic
process supervisor and Passage's list of services), the demo, and the Stripe emulator.

The product (passage/ outside this package, api/, activities/, workflows/, worker.py, simulator/)
never imports it; tests/unit/test_import_direction.py keeps it so, and pyproject.toml leaves it out
of the installed package.
"""
