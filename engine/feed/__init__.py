"""The feed: the messages between whatever produces a run and whatever shows it."""
