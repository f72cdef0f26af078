"""Kernel header equivalents: constants and inline helpers shared by sim/ modules."""
