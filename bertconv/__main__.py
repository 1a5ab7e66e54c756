"""``python -m bertconv``: the ``bertconv`` command, for an environment whose scripts are not on PATH."""
import sys

from .cli import run

if __name__ == "__main__":  # not when a worker process of ``--all`` imports this module again
    sys.exit(run())
