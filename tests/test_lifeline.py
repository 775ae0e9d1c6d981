"""Servers shipskip starts: each start is said in the log, and the server stops with the block."""

import logging
import sys

import pytest

from shipskip import lifeline
from shipskip.embedded import free_port


@pytest.mark.slow  # a child process
def test_each_server_start_is_logged_with_its_pid(caplog):
    caplog.set_level(logging.INFO, logger="shipskip.lifeline")
    port = free_port()
    args = [str(port), "--bind", "127.0.0.1", "--directory", sys.prefix]
    with lifeline.serve(
        "http.server", args, f"http://127.0.0.1:{port}/", "a file server", startup_s=60
    ) as proc:
        said = [r.getMessage() for r in caplog.records if r.name == "shipskip.lifeline"]
        assert said == [f"started a file server (pid {proc.pid})"]
        assert proc.poll() is None
    assert proc.poll() is not None
