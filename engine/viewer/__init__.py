"""What a viewer knows of a run (or a sweep) after some messages. Torch-free."""
