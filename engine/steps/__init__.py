"""The step engines: the exact stats (stats.py), the hand-written fast step and the compiled step."""
