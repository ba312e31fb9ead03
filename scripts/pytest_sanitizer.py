"""pytest plugin for the sanitizer stage of scripts/test.sh: a sanitizer report
written by any process during a test fails that test.

moat (built with -Db_sanitize=address,undefined) writes its ASan / UBSan / LSan
reports to files, not to stderr (ASAN_OPTIONS / UBSAN_OPTIONS log_path=DIR/asan
and DIR/ubsan, set by test.sh), because the tests capture moat's stderr into
their tmp dirs and a report there would go unseen. After each test's teardown
(moat has been stopped, leaks reported), the report files that appeared since
the previous test are attributed to this test: its teardown fails with the
report's text, so the junit XML counts it and names it. Reports that reached
moat's stderr anyway (see REPORT_RE) are found the same way. Each attribution is
also appended to DIR/attribution.txt ("<report file>\\t<test id>"); test.sh
lists every report file, attributed or not, and fails the stage on any.

Enabled with: PYTHONPATH=scripts pytest -p pytest_sanitizer, with
MOAT_SANITIZER_LOG_DIR=DIR in the environment.
"""

import os
import re

import pytest

LOG_DIR = os.environ.get("MOAT_SANITIZER_LOG_DIR", "")
_seen = set()
# Second net, for a report that reached stderr anyway (a runtime whose log_path
# is ignored, as GCC's libubsan does; an unwritable log dir): the new bytes of
# every moat.stderr under pytest's base temp dir are searched after each test.
REPORT_RE = re.compile(r"^\S+:\d+:\d+: runtime error: |^==\d+==ERROR: \w+Sanitizer|"
                       r"^SUMMARY: \w+Sanitizer", re.M)
_stderr_pos = {}
_basetemp = None


def _reports():
    if not LOG_DIR or not os.path.isdir(LOG_DIR):
        return []
    return sorted(os.path.join(LOG_DIR, n) for n in os.listdir(LOG_DIR)
                  if n.startswith(("asan.", "ubsan.", "lsan.")))


def _new_reports():
    new = [p for p in _reports() if p not in _seen]
    _seen.update(new)
    return new


def _read(path, limit=6000):
    try:
        with open(path, "r", errors="replace") as f:
            text = f.read()
    except OSError as e:
        return "(unreadable: %s)" % e
    return text if len(text) <= limit else text[:limit] + "\n...(truncated)"


def _new_stderr_reports():
    """(path, text) of sanitizer reports written to moat's stderr since the last call."""
    found = []
    if _basetemp is None:
        return found
    for root, _, files in os.walk(_basetemp):
        for n in files:
            if not n.endswith(".stderr"):
                continue
            path = os.path.join(root, n)
            try:
                size = os.path.getsize(path)
                if size <= _stderr_pos.get(path, 0):
                    continue
                with open(path, "rb") as f:
                    f.seek(_stderr_pos.get(path, 0))
                    text = f.read(size - _stderr_pos.get(path, 0)).decode("utf-8", "replace")
            except OSError:
                continue
            _stderr_pos[path] = size
            m = REPORT_RE.search(text)
            if m:
                found.append((path, text[m.start():m.start() + 6000]))
    return found


def pytest_sessionstart(session):
    global _basetemp
    _new_reports()  # whatever is there already belongs to no test
    if LOG_DIR:
        _basetemp = str(session.config._tmp_path_factory.getbasetemp())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when != "teardown":
        return
    new = [(p, _read(p)) for p in _new_reports()] + _new_stderr_reports()
    if not new:
        return
    with open(os.path.join(LOG_DIR, "attribution.txt"), "a") as f:
        for p, _ in new:
            f.write("%s\t%s\n" % (p if p.endswith(".stderr") else os.path.basename(p),
                                   item.nodeid))
    rep = outcome.get_result()
    rep.outcome = "failed"
    rep.longrepr = "sanitizer report(s) during %s:\n%s" % (
        item.nodeid, "\n".join("== %s\n%s" % (p, text) for p, text in new))
