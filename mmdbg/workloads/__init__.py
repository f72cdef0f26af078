"""Simulated programs and named scenarios (see ``api``, ``programs``, ``scenarios``)."""
