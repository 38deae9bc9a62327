"""Where messages end: Comet's REST API, or an offline archive."""
