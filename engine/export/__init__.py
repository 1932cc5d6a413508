"""A recording as CSV tables or TensorBoard event files."""
