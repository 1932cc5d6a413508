"""Word lists and the lecture's data pipeline (dataset.py needs torch; words.py
and errors.py do not, so nothing is imported here)."""
