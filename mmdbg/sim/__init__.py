"""The simulated machine: a Linux memory manager in Python (see ARCHITECTURE.md)."""
