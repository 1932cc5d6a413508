"""Several configurations of the lecture's stack trained side by side (--sweep)."""
