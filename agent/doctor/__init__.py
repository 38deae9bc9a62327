"""Checks with fixes: the server, then the local machine."""
