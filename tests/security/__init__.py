"""The security suite: the API key goes nowhere but the Authorization header.

Every test runs the real agent on loopback against the stand-in with the
canary key (``tests.helpers.CANARY_KEY``) and states its bar in its
docstring. A leak is any 12-character piece of the key (``leaks.py``), so a
key cut in half by a line wrap or a truncation counts too. The systemd units'
exposure (``systemd-analyze security`` at most 2.0) is checked once, in
``tests/test_systemd.py``.
"""
