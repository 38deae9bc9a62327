"""The HTML (and PNG) report drawn from an archive."""
