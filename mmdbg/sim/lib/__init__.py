"""lib/: kernel library code (stack depot ...)."""
