"""The lecture's deep stack: its layers, how it is built, sampling and BatchNorm calibration."""
