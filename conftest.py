"""Fixtures for every test folder (tests/ and integrations/)."""

import pytest


@pytest.fixture(autouse=True)
def _precision_speed_file(tmp_path, monkeypatch):
    """Tests never write the measured precision timings behind ``auto`` into the user's cache, and each
    test starts without any."""
    from resrank_rag import precision

    monkeypatch.setattr(precision, "_speed_path", lambda: tmp_path / precision.SPEED_FILE)
