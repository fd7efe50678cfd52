"""The usage ledger (one row per exchange) lands here; see the ledger issue."""
