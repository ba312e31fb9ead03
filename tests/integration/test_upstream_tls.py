"""moat -> upstream over TLS (upstreams.NAME.tls): the upstream's certificate is
verified against tls.ca and its name (tls.server_name, else the server address), and
nothing is sent in clear. Also: config keys that are not implemented are refused, not
silently ignored."""
import os

import pytest

import moatctl


@pytest.fixture
def tls_upstream(upstream):
    """upstream_server.py serving HTTPS with the dev server certificate (localhost)."""
    up = upstream("tls-app", args=["--tls-cert", os.path.join(moatctl.CERTS, "server.crt"),
                                   "--tls-key", os.path.join(moatctl.CERTS, "server.key")])
    return up.port


def _moat(start_moat, port, tls):
    return start_moat({"upstreams": {"app": {"servers": ["127.0.0.1:%d" % port], "tls": tls}}})


def test_verified_tls_upstream_serves(start_moat, tls_upstream):
    m = _moat(start_moat, tls_upstream, {"enabled": True, "ca": moatctl.CA})
    for _ in range(3):  # also over a kept-alive TLS upstream connection
        r = moatctl.curl(m.https_port, "/over-tls")
        assert r.status == 200, r
        assert b'"tls": true' in r.body and b'"/over-tls"' in r.body


def test_server_name_is_verified(start_moat, tls_upstream):
    ok = _moat(start_moat, tls_upstream,
               {"enabled": True, "ca": moatctl.CA, "server_name": "localhost"})
    assert moatctl.curl(ok.https_port, "/").status == 200
    ok.stop()
    bad = _moat(start_moat, tls_upstream,
                {"enabled": True, "ca": moatctl.CA, "server_name": "not-this-host.example"})
    assert moatctl.curl(bad.https_port, "/").status == 502


def test_untrusted_upstream_certificate_is_refused(start_moat, tls_upstream, tmp_path):
    other_ca = os.path.join(moatctl.CERTS, "server-ec.crt")  # a certificate, not our CA
    m = _moat(start_moat, tls_upstream, {"enabled": True, "ca": other_ca})
    assert moatctl.curl(m.https_port, "/").status == 502


def test_plain_moat_to_tls_upstream_fails_closed(start_moat, tls_upstream):
    """Without tls.enabled moat speaks plain HTTP; a TLS server cannot answer that: 502."""
    m = _moat(start_moat, tls_upstream, {"enabled": False})
    assert moatctl.curl(m.https_port, "/").status == 502
