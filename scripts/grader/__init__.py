"""SSL Labs-style grade from a testssl.sh JSON file (standard library only).

    python3 scripts/grader [--quiet] [--json] FILE.json

FILE is testssl.sh's flat JSON (--jsonfile) or structured JSON (--jsonfile-pretty);
written against the ids of testssl.sh 3.0.8 (Debian 12), tolerant of the 3.1 names
(FS/PFS, "<cert#N>" / "<hostCert#N>" suffixes). It prints the three category scores,
the weighted score and its letter, every cap that applied with its reason, and the
final grade. Exit status: 0 for A or A+, 1 for anything below A (A-, B ... F, T, M),
2 when the file cannot be graded (unreadable, no protocol or certificate results, scan
problems: a FATAL finding, scanProblem, a local openssl testssl.sh calls too old).
testssl.sh's remarks about its own environment that only keep it from testing some
checks (engine_problem: no GOST engine in the local openssl) are not findings against
the server: they are listed as "not tested" and do not change the grade or the status.

The method is the Qualys SSL Labs "SSL Server Rating Guide" (version 2009, the
revision letters 2009a..2009r are amendments to the same text) as we read it. SSL Labs
itself also runs browser handshake simulations and checks we cannot reproduce from
testssl.sh output, so this is an approximation that errs on the strict side:

 1. Certificate (guide "Certificate Inspection"): untrusted chain, expired or not yet
    valid -> T; name mismatch -> M (the 2009 text scored these 0; later revisions report
    them as the separate grades T and M, with the grade "if trust issues are ignored").
    Revoked, MD2/MD5 signature, key < 1024 bits -> F.
 2. Protocol support (guide Table 2), key exchange (Table 3), cipher strength (Table 4),
    each 0..100; combined 30% / 30% / 40% (guide "Combining Category Scores"); a zero in
    any category makes the total 0; letter from Table 1 (>=80 A, >=65 B, >=50 C, >=35 D,
    >=20 E, else F).
 3. Caps and bonuses from the amendments.

The modules, in the order the data flows:

  findings.py  reading testssl.sh JSON: Finding, load(), the "offered" / "vulnerable"
               wordings, per-suite results (Cipher)
  facts.py     Facts: what the findings say about the server (protocols, suites, key
               sizes, certificates, HSTS ...), each computed on first use
  scores.py    the guide's Tables 1-4 and the three category scores
  rules.py     RULES: the table of every cap and penalty (1. and 3. above), one row each
               with its condition, effect, reason text and source
  grading.py   grade(): scores, then the table, then the final letter (Result)
  report.py    the text report
  cli.py       the command line (__main__.py runs it)

Rules whose source says "moat policy" are not SSL Labs rules: they make the grade
stricter where moat's own policy (docs/tls.md) wants more than SSL Labs does.
"""

from .findings import Finding, load
from .grading import Result, grade
from .report import report
from .rules import RULES

__all__ = ["Finding", "Result", "RULES", "grade", "load", "report"]
