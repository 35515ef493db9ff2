"""Fair limits per user: request rate, concurrent turns, daily token budget."""
