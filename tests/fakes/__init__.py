"""Fakes at the project's seams: the Comet server, NVML."""
