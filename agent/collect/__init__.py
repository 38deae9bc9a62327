"""Collectors: one file each, a pure parse plus a reader with an injectable root."""
