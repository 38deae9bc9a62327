"""Test driver: run_child in the main thread of a process of its own, so real signals reach it.

usage: python -m tests.run_driver RESULT.json [--pty] [--experiment-key KEY] -- COMMAND...

Writes the ChildExit, and whether the wrapper's signal handlers were put
back, to RESULT.json, and exits with the command's status. With
--experiment-key the command's environment comes from child_env() and the
settings load_settings() finds, as `comet-agent run` will build it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

from agent.config import load_settings
from agent.wrap.process import child_env, run_child


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("result")
    parser.add_argument("--pty", action="store_true")
    parser.add_argument("--experiment-key")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    env = dict(os.environ)
    if args.experiment_key:
        env = child_env(os.environ, load_settings(), args.experiment_key)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    result = run_child(argv, env=env, use_pty=args.pty)
    restored = all(signal.getsignal(s) == h for s, h in before.items())
    Path(args.result).write_text(json.dumps({**dataclasses.asdict(result), "restored": restored}))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
