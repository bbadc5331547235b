"""HTTP concerns shared by every door: body limits, rate limits, health and metrics."""
