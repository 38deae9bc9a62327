"""The wrapped command: its process and its output stream."""
