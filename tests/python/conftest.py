"""Shared fixtures: the server under test comes from OPTILLM_SERVER_URL."""

import os

import pytest

SERVER_URL = os.environ.get("OPTILLM_SERVER_URL", "").rstrip("/")
MODEL = os.environ.get("OPTILLM_TEST_MODEL", "smollm2-135m")
API_KEY = os.environ.get("OPTILLM_API_KEY", "no-key")


def pytest_collection_modifyitems(config, items):
    if SERVER_URL:
        return
    skip = pytest.mark.skip(
        reason="OPTILLM_SERVER_URL is not set: start `optillm serve` and set it "
        "(scripts/python-clients.sh does both)"
    )
    for item in items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def server_url():
    return SERVER_URL


@pytest.fixture(scope="session")
def model():
    return MODEL


@pytest.fixture(scope="session")
def openai_client(server_url):
    openai = pytest.importorskip("openai")
    # No retries: a failure should show at once, not after back-off.
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key=API_KEY, max_retries=0, timeout=300)


@pytest.fixture(scope="session")
def ollama_client(server_url):
    ollama = pytest.importorskip("ollama")
    headers = {"Authorization": f"Bearer {API_KEY}"} if API_KEY != "no-key" else None
    return ollama.Client(host=server_url, headers=headers, timeout=300)
