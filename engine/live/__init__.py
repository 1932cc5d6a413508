"""A live run: the trainer in a child process (child, runner) and the viewer's side of it (session)."""
