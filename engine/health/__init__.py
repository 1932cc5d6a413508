"""Health: rules over plain results (no torch), thresholds, and the monitor that applies them."""
