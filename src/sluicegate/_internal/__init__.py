"""Small helpers shared by every layer (clock, number checks, release results). Internal."""
