"""get_stats() (issue 19): LlmDataDist::GetStats() as a dict, its
extension options (llm.MaxLinks, llm.MetricsPort) passed through, and the
Prometheus endpoint answering. Byte and call values are checked against
transfers in the C++ suite (tests/metrics_test.cc)."""
import socket
import urllib.request

import pytest

from llm_datadist import LLMConfig, LLMDataDist, LLMException, LLMRole, LLMStatusCode


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _options(**extra):
    cfg = LLMConfig()
    cfg.device_id = 0
    cfg.listen_ip_info = "127.0.0.1:0"
    opts = cfg.generate_options()
    opts.update(extra)
    return opts


def test_get_stats_reports_options_and_an_idle_instance():
    port = _free_port()
    dd = LLMDataDist(LLMRole.PROMPT, 1)
    dd.init(_options(**{"llm.MaxLinks": "4096", "llm.MetricsPort": f"127.0.0.1:{port}"}))
    try:
        stats = dd.get_stats()
        assert stats["max_links"] == 4096
        assert stats["links"] == 0 and stats["in_flight"] == 0
        assert stats["transports"] == {} and stats["peers"] == {}
        assert stats["handshakes_pending"] == 0
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert 'llm_datadist_links_max{cluster="1"} 4096' in body
        # A connection to the listener is admitted, then dropped without a
        # HELLO; the counters say so.
        with socket.create_connection(("127.0.0.1", dd.listen_port())) as c:
            c.sendall(b"x" * 32)
            c.settimeout(10)
            assert c.recv(1) == b""
        stats = dd.get_stats()
        assert stats["connections_accepted"] == 1
        assert stats["handshakes_dropped_bad_frame"] == 1
    finally:
        dd.finalize()


def test_bad_max_links_is_param_invalid():
    dd = LLMDataDist(LLMRole.PROMPT, 1)
    with pytest.raises(LLMException) as e:
        dd.init(_options(**{"llm.MaxLinks": "0"}))
    assert e.value.status_code == LLMStatusCode.LLM_PARAM_INVALID
    assert "llm.MaxLinks" in str(e.value)
