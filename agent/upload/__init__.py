"""Offline archives back to Comet: replay, upload windows, progress."""
