"""What wrap_openai returns: a proxy that behaves as the client and patches nothing."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import openai
import pytest
from openai_rows import llm_rows

from spanlog import wrap_openai


def test_wrapped_client_passes_isinstance_and_delegates(client: openai.OpenAI) -> None:
    """The proxy reports the client's class, exposes its attributes, and wraps once."""
    wrapped = wrap_openai(client)
    assert isinstance(wrapped, openai.OpenAI)
    assert type(wrapped) is not openai.OpenAI  # a proxy, not the client itself
    assert wrapped.base_url == client.base_url
    assert wrapped.api_key == "test"
    assert wrapped.models is client.models  # untraced resources are the client's own
    assert wrap_openai(wrapped) is wrapped
    assert isinstance(wrapped.chat.completions, type(client.chat.completions))


def test_wrapping_patches_nothing(client: openai.OpenAI) -> None:
    """The client and openai's classes are left exactly as they were."""
    create = type(client.chat.completions).create
    before = dict(vars(client))
    wrap_openai(client)
    assert type(client.chat.completions).create is create
    assert dict(vars(client)) == before


def test_wrap_openai_rejects_other_objects() -> None:
    """Anything but an OpenAI client is a TypeError that names what was given."""
    with pytest.raises(TypeError, match=r"wrap_openai\(client\).*got dict"):
        wrap_openai({})


def test_with_options_and_context_manager_stay_wrapped(
        fake_openai: Any, collector: Any, project: str) -> None:
    """with_options() and `with wrap_openai(OpenAI(...)) as c` give wrapped clients."""
    with wrap_openai(openai.OpenAI(base_url=fake_openai.base_url, api_key="test",
                                   max_retries=0)) as wrapped:
        assert isinstance(wrapped, openai.OpenAI)
        faster = wrapped.with_options(timeout=5)
        faster.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
        wrapped.copy().embeddings.create(model="e", input="b")
    assert wrapped.is_closed()
    rows = llm_rows(collector, project, 2)
    assert [r["span_attributes"]["name"] for r in rows] == ["Chat Completion", "Embedding"]


def test_importing_spanlog_does_not_import_openai() -> None:
    """`import spanlog` leaves openai unimported (cold starts stay cheap)."""
    code = "import sys, spanlog; spanlog.wrap_openai; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_azure_client_is_wrapped_with_its_provider(fake_openai: Any, collector: Any,
                                                   project: str) -> None:
    """An AzureOpenAI client logs with provider "azure" and stays an AzureOpenAI."""
    azure = openai.AzureOpenAI(azure_endpoint=fake_openai.azure_endpoint, api_key="test",
                               api_version="2024-10-21", max_retries=0)
    with wrap_openai(azure) as wrapped:
        assert isinstance(wrapped, openai.AzureOpenAI)
        reply = wrapped.chat.completions.create(
            model="my-deployment", messages=[{"role": "user", "content": "az"}])
    assert reply.choices[0].message.content == "echo: az"
    [row] = llm_rows(collector, project, 1)
    assert row["metadata"]["provider"] == "azure"
    assert row["metadata"]["model"] == "my-deployment"
