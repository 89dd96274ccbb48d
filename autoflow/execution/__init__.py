"""Real execution: backends that run the core's decisions as real processes (Ray)."""
