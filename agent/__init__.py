"""comet-agent: a system-monitoring agent for experiments tracked in Comet."""

__version__ = "0.1.0"
