"""The command line: python3 scripts/grader [--quiet] [--json] FILE.json"""

import argparse
import json
import sys

from .findings import load
from .grading import grade
from .report import report

PROG = "grader"


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG,
                                 description="SSL Labs-style grade from testssl.sh JSON")
    ap.add_argument("file", help="testssl.sh --jsonfile output")
    ap.add_argument("--quiet", action="store_true", help="print only the grade")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        findings = load(args.file)
    except (OSError, ValueError) as e:
        print("%s: cannot read %s: %s" % (PROG, args.file, e), file=sys.stderr)
        return 2
    r = grade(findings)
    if args.json:
        print(json.dumps(r.as_dict(), indent=2))
    elif args.quiet:
        print(r.grade or "ERROR")
    else:
        report(r)
    if r.errors or r.grade is None:
        for e in r.errors or ["no grade"]:
            print("%s: %s" % (PROG, e), file=sys.stderr)
        return 2
    return 0 if r.grade in ("A+", "A") else 1
