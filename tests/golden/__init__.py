"""The golden end-to-end file: one fixture host through ``comet-agent sample --json``."""
