"""Team access: which models a key may use (`policy`), what it has spent against its budgets (`budgets`), and
whether a generation is admitted now (`limits`: budgets and the rate limits shared by every worker)."""
