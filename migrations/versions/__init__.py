"""Ledger revisions, a package so that installing Passage (not only a checkout) ships them."""
