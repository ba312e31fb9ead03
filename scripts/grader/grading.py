"""The grade: the three category scores, then the rule table (rules.RULES)."""

from .facts import Facts, scan_problems
from .rules import A_PLUS, CERT, MISMATCH, NOT_A_PLUS, NOTE, RULES, SERVER, TRUST, \
    WARNING, hits
from .scores import HSTS_A_PLUS, MISSING, RANK, cipher_strength, combine, key_exchange, \
    protocol_support


class Result:
    def __init__(self):
        self.scores = {}        # category -> (score, detail)
        self.score = None
        self.score_letter = None
        self.caps = []          # (grade, reason, rule)
        self.warnings = []      # (reason, rule): cap A- (rating guide 2009d "warnings")
        self.notes = []         # informative, no effect on the grade
        self.skipped = []       # checks the scanner could not run on its side (no finding)
        self.trust = []         # reasons for T
        self.mismatch = []      # reasons for M
        self.a_plus = []        # reasons A+ was granted or refused
        self.grade = None       # final: A+ .. F, T or M
        self.grade_ignoring_trust = None
        self.target = ""
        self.errors = []
        self.fired = []         # ids of the rules.RULES rows that applied, in order

    def cap(self, grade, reason, rule):
        self.caps.append((grade, reason, rule))

    def as_dict(self):
        return {"grade": self.grade, "grade_ignoring_trust": self.grade_ignoring_trust,
                "score": self.score, "score_letter": self.score_letter,
                "scores": {k: v[0] for k, v in self.scores.items()},
                "caps": [{"grade": g, "reason": r, "rule": rule} for g, r, rule in self.caps],
                "warnings": [{"reason": r, "rule": rule} for r, rule in self.warnings],
                "trust": self.trust, "mismatch": self.mismatch, "notes": self.notes,
                "skipped": self.skipped,
                "a_plus": self.a_plus, "target": self.target, "errors": self.errors}


def record(rule, text, r):
    """Puts one hit of a row into the result, where its effect belongs."""
    r.fired.append(rule.id)
    if rule.effect in RANK:
        r.cap(rule.effect, text, rule.source)
    elif rule.effect == WARNING:
        r.warnings.append((text, rule.source))
    elif rule.effect == TRUST:
        r.trust.append(text)
    elif rule.effect == MISMATCH:
        r.mismatch.append(text)
    elif rule.effect == NOTE:
        r.notes.append(text)
    elif rule.effect == NOT_A_PLUS:
        r.a_plus.append("not A+: " + text)
    else:
        raise ValueError("rule %s: unknown effect %r" % (rule.id, rule.effect))


def apply_rules(scope, facts, r):
    for rule in RULES:
        if rule.scope == scope:
            for text in hits(rule, facts):
                record(rule, text, r)


def score(category, measure, fx, r):
    """Scores one category; False (and an error) when the scan has no data for it."""
    s = measure(fx)
    if s is None:
        r.errors.append(MISSING[category])
        return False
    r.scores[category] = s
    return True


def inspect_certificates(fx, r):
    if not fx.has_cert_results:
        # without them T, M and the key caps would pass unseen
        r.errors.append("no certificate results (cert_*): testssl.sh did not inspect it")
        return False
    for cert in fx.certs:
        apply_rules(CERT, cert, r)
    return True


def final_grade(fx, r):
    """The letter after the caps and warnings, then A+ (2009d), then T and M."""
    g = r.score_letter
    for cap_grade, _, _ in r.caps:
        if RANK[cap_grade] > RANK[g]:
            g = cap_grade
    if r.warnings and RANK[g] < RANK["A-"]:
        g = "A-"  # 2009d: "a server with good configuration, but with one or more
        #            warnings, is given a reduced grade A-"
    if g == "A":
        apply_rules(A_PLUS, fx, r)
        if not r.a_plus:
            r.a_plus = ["A+: HSTS max-age %d >= %d, no warnings" % (fx.hsts_age, HSTS_A_PLUS)]
            g = "A+"
    r.grade_ignoring_trust = g
    r.grade = "T" if r.trust else "M" if r.mismatch else g


def grade(findings):
    """Grades a list of Finding; returns a Result. A scan without protocol, suite,
    certificate or key results gets errors and no grade."""
    r = Result()
    fx = Facts(findings)
    r.target = fx.target
    r.errors, r.skipped = scan_problems(findings)
    if not (score("Protocol support", protocol_support, fx, r) and
            score("Cipher strength", cipher_strength, fx, r) and
            inspect_certificates(fx, r) and
            score("Key exchange", key_exchange, fx, r)):
        return r
    r.score, r.score_letter = combine(r.scores)
    apply_rules(SERVER, fx, r)
    final_grade(fx, r)
    return r
