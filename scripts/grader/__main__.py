"""Runs the grader: python3 scripts/grader FILE.json, or python3 -m grader with
scripts/ on sys.path."""

import os
import sys

if not __package__:  # run as a directory: make "grader" importable as a package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from grader.cli import main  # noqa: E402

sys.exit(main())
