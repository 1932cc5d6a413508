"""The recording: its line format (format, encode, decode, decode_v1,
snapshot_codec, packing, json_numbers, lines), the one opener every reader
uses (opener, errors), the writers (writer, recorder, recording_source) and
the readers (replay_source with replay_index, line_cache, timeline and
replay_delivery; follow_source). Torch-free."""
