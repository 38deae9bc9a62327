"""Talking to Comet: the endpoint table, the bodies, the client."""
