"""searchstats: self-hosted search analytics."""
