"""The thin subcommand handlers behind agent/cli.py."""
