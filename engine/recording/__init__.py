"""Runs as messages: the feed, the recording format, the recorder, file and live sources, the
viewer's state and export. Torch-free but for session.py's child process."""
