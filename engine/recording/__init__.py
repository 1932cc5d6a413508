"""The recording: its line format (stream, packing), the writer (recorder,
recording_source) and the readers (replay_source, follow_source). Torch-free."""
