"""Shared pytest configuration (keep small; module-specific fixtures live in their modules)."""

import pytest
import requests


@pytest.fixture
def new_session():
    """A factory of requests sessions, each closed when the test ends (no leaked sockets)."""
    sessions = []

    def make():
        session = requests.Session()
        sessions.append(session)
        return session

    yield make
    while sessions:
        sessions.pop().close()


@pytest.fixture
def session(new_session):
    """One requests session, closed when the test ends."""
    return new_session()
