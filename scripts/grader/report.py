"""The text report: the score table, every cap with its rule, notes, the grade."""

import sys

from .scores import CATEGORIES


def write_scores(r, w):
    w("  %-22s %6s  %s\n" % ("category", "score", "detail"))
    for name, weight in CATEGORIES:
        s, detail = r.scores[name]
        w("  %-22s %6g  %s\n" % ("%s (%d%%)" % (name, weight), s, detail))
    w("  %-22s %6d  -> %s (Table 1: >=80 A, >=65 B, >=50 C, >=35 D, >=20 E)\n\n"
      % ("weighted score", r.score, r.score_letter))


def write_caps(r, w):
    w("caps:\n")
    if not r.caps and not r.warnings:
        w("  none\n")
    for g, reason, rule in r.caps:
        w("  %-2s  %s  [%s]\n" % (g, reason, rule))
    for reason, rule in r.warnings:
        w("  A-  warning: %s  [%s]\n" % (reason, rule))
    for t in r.trust:
        w("  T   not trusted: %s\n" % t)
    for m in r.mismatch:
        w("  M   name mismatch: %s\n" % m)
    for a in r.a_plus:
        w("  %s\n" % a)


def write_list(title, items, w):
    if items:
        w(title + "\n")
        for n in items:
            w("  - %s\n" % n)


def report(r, out=sys.stdout):
    w = out.write
    w("SSL Labs-style rating (SSL Server Rating Guide 2009 + amendments) for %s\n\n"
      % (r.target or "?"))
    if r.errors and r.score is None:
        for e in r.errors:
            w("ERROR: %s\n" % e)
        return
    write_scores(r, w)
    write_caps(r, w)
    write_list("notes:", r.notes, w)
    write_list("not tested (scanner environment, not a finding against the server):",
               r.skipped, w)
    for e in r.errors:
        w("ERROR: %s\n" % e)
    w("\nGRADE: %s" % r.grade)
    if r.grade in ("T", "M"):
        w("  (if trust issues are ignored: %s)" % r.grade_ignoring_trust)
    w("\n")
