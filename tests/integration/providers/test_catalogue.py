"""The model catalogue: loading, validation, aliases, keys, and real providers built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aichat_backend.errors import FailedPrecondition, InvalidArgument
from aichat_backend.providers.base import ModelEntry
from aichat_backend.providers.catalogue import (
    ModelCatalogue,
    build_provider,
    effective_base_url,
    load_catalogue,
    parse_catalogue,
)
from aichat_backend.providers.retry import open_stream_with_retry
from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.integration.providers.support import ask, collect, text_of

pytestmark = pytest.mark.timeout(10)

CATALOGUE = """
default: claude
models:
  - name: gpt
    provider: openai
    model_name: gpt-4o-mini
    api_key: ${OPENAI_API_KEY}
    temperature: 0.2
    fallbacks: [claude, local]
  - name: claude
    provider: anthropic
    model_name: claude-sonnet-4-5
    api_key: "${ANTHROPIC_API_KEY}"
  - name: local
    provider: ollama
    model_name: llama3
"""


def test_parses_entries_with_env_substitution() -> None:
    catalogue = parse_catalogue(
        CATALOGUE, {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a", "UNUSED": "x"}
    )
    assert catalogue.default_name == "claude"
    assert [e.name for e in catalogue.entries()] == ["gpt", "claude", "local"]
    gpt = catalogue.get("gpt")
    assert gpt == ModelEntry(
        name="gpt",
        provider="openai",
        model_name="gpt-4o-mini",
        api_key="sk-o",
        fallbacks=["claude", "local"],
        temperature=0.2,
        # Filled in by the catalogue: gpt-4o-mini's known limits; no cache points on
        # an OpenAI model.
        context_window=128_000,
        max_output_tokens=16_384,
        prompt_caching=False,
    )
    assert catalogue.get("claude").api_key == "sk-a"
    assert catalogue.get("local").api_key is None
    assert [t.label for t in catalogue.stream_targets("gpt")] == ["gpt", "claude", "local"]
    assert [t.model for t in catalogue.stream_targets("gpt")] == [
        "gpt-4o-mini",
        "claude-sonnet-4-5",
        "llama3",
    ]


def test_env_defaults_and_partial_substitution() -> None:
    text = """
models:
  - name: m
    provider: openai-compatible
    model_name: x
    base_url: http://${HOST:-localhost}:${PORT}/v1
    api_key: key-${SUFFIX}
"""
    entry = parse_catalogue(text, {"PORT": "9000", "SUFFIX": "abc"}).get("m")
    assert entry.base_url == "http://localhost:9000/v1"
    assert entry.api_key == "key-abc"


@pytest.mark.parametrize("top", ["models", "llms", None])
def test_accepts_models_llms_or_a_bare_list(top: str | None) -> None:
    items = "- {name: a, provider: openai, model_name: gpt-4o, api_key: k}\n"
    text = f"{top}:\n" + "  " + items if top else items
    catalogue = parse_catalogue(text, {})
    assert catalogue.default_name == "a"


def test_the_old_llms_yml_shape_loads() -> None:
    # The seed's config/llms.yml, verbatim apart from the comments.
    text = """
llms:
  - name: "Anthropic Claude"
    provider: "anthropic"
    base_url: "https://api.anthropic.com/v1"
    api_key: "${LLM_API_KEY}"
    model_name: "claude-3-5-sonnet-20241022"
  - name: "Local Ollama"
    provider: "ollama"
    base_url: "http://localhost:11434/v1"
    api_key: "not-required"
    model_name: "llama2"
"""
    catalogue = parse_catalogue(text, {"LLM_API_KEY": "sk-ant"})
    claude = catalogue.get("Anthropic Claude")
    # The Anthropic SDK adds /v1/messages itself.
    assert effective_base_url(claude) == "https://api.anthropic.com"
    assert catalogue.is_configured("Anthropic Claude")


@pytest.mark.parametrize(
    ("alias", "url"),
    [
        ("ollama", "http://localhost:11434/v1"),
        ("vllm", "http://localhost:8000/v1"),
        ("openrouter", "https://openrouter.ai/api/v1"),
        ("gemini", "https://generativelanguage.googleapis.com/v1beta/openai/"),
        ("openai", "https://api.openai.com/v1"),
        ("anthropic", "https://api.anthropic.com"),
    ],
)
def test_provider_aliases_default_base_urls(alias: str, url: str | None) -> None:
    entry = ModelEntry(name="m", provider=alias, model_name="x", api_key="k")
    assert effective_base_url(entry) == url
    ModelCatalogue([entry]).provider_for("m")  # builds a client without a network call


def test_keyless_local_providers_are_configured_without_a_key() -> None:
    catalogue = ModelCatalogue(
        [
            ModelEntry(name="o", provider="ollama", model_name="llama3"),
            ModelEntry(name="v", provider="vllm", model_name="qwen"),
            ModelEntry(name="c", provider="openai-compatible", model_name="x", base_url="http://h"),
        ]
    )
    for name in ("o", "v", "c"):
        assert catalogue.is_configured(name)
        catalogue.provider_for(name)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("models: [{name: a, provider: bogus, model_name: x}]", ["'a'", "bogus"]),
        ("models: [{name: a, provider: openai}]", ["'a'", "model_name"]),
        ("models: [{provider: openai, model_name: x}]", ["#1", "name"]),
        ("models: [{name: a, provider: openai-compatible, model_name: x}]", ["'a'", "base_url"]),
        ("models: [{name: a, provider: openai, model_name: x, modle: y}]", ["'a'", "modle"]),
        (
            "models: [{name: a, provider: openai, model_name: x, fallbacks: [zzz]}]",
            ["'a'", "zzz"],
        ),
        (
            "models: [{name: a, provider: openai, model_name: x, temperature: hot}]",
            ["'a'", "temperature"],
        ),
        (
            "models: [{name: a, provider: openai, model_name: x},"
            " {name: a, provider: openai, model_name: y}]",
            ["'a'", "twice"],
        ),
        ("default: nope\nmodels: [{name: a, provider: openai, model_name: x}]", ["nope"]),
        ("models: []", ["models"]),
        ("models: {name: a}", ["models"]),
        ("just a string", ["models"]),
        ("models: [unclosed", ["YAML"]),
        ("models: [42]", ["#1"]),
    ],
)
def test_malformed_catalogues_are_value_errors_naming_the_entry(
    text: str, names: list[str]
) -> None:
    with pytest.raises(ValueError) as caught:
        parse_catalogue(text, {}, source="llms.yml")
    message = str(caught.value)
    assert "llms.yml" in message
    for name in names:
        assert name in message


def test_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "models.yml"
    path.write_text(CATALOGUE)
    catalogue = load_catalogue(path, {"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"})
    assert catalogue.get("gpt").model_name == "gpt-4o-mini"
    with pytest.raises(ValueError, match=r"missing\.yml"):
        load_catalogue(tmp_path / "missing.yml", {})


def test_unknown_model_is_invalid_argument() -> None:
    catalogue = parse_catalogue(CATALOGUE, {})
    with pytest.raises(InvalidArgument) as caught:
        catalogue.get("gpt-5-ultra")
    assert caught.value.reason == "UNKNOWN_MODEL"
    assert caught.value.field == "model"
    with pytest.raises(InvalidArgument):
        catalogue.provider_for("gpt-5-ultra")


def test_missing_key_loads_but_fails_on_use_naming_the_variable() -> None:
    catalogue = parse_catalogue(CATALOGUE, {"ANTHROPIC_API_KEY": "sk-a"})  # no OPENAI_API_KEY
    assert not catalogue.is_configured("gpt")
    with pytest.raises(FailedPrecondition) as caught:
        catalogue.provider_for("gpt")
    assert caught.value.reason == "PROVIDER_NOT_CONFIGURED"
    assert caught.value.metadata["model"] == "gpt"
    assert caught.value.metadata["variable"] == "OPENAI_API_KEY"
    # The rest of the catalogue is usable.
    catalogue.provider_for("claude")
    catalogue.provider_for("local")


def test_build_provider_never_falls_back_to_sdk_environment_variables() -> None:
    entry = ModelEntry(name="m", provider="anthropic", model_name="x")
    with pytest.raises(FailedPrecondition) as caught:
        build_provider(entry, timeout_seconds=1)
    assert caught.value.reason == "PROVIDER_NOT_CONFIGURED"


def test_env_configured_model_without_key_names_aichat_api_key() -> None:
    catalogue = ModelCatalogue([ModelEntry(name="default", provider="openai", model_name="x")])
    with pytest.raises(FailedPrecondition) as caught:
        catalogue.provider_for("default")
    assert caught.value.reason == "PROVIDER_NOT_CONFIGURED"
    assert caught.value.metadata["variable"] == "AICHAT_API_KEY"


def test_empty_key_counts_as_missing() -> None:
    catalogue = ModelCatalogue(
        [ModelEntry(name="d", provider="anthropic", model_name="x", api_key="")]
    )
    assert not catalogue.is_configured("d")


def test_one_provider_per_entry() -> None:
    catalogue = parse_catalogue(CATALOGUE, {"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"})
    assert catalogue.provider_for("gpt") is catalogue.provider_for("gpt")
    assert catalogue.provider_for("gpt") is not catalogue.provider_for("claude")


# --- providers built from entries, against the fake -------------------------------------


async def test_catalogue_providers_stream_from_the_fake(fake: FakeLLMServer) -> None:
    text = """
models:
  - name: claude
    provider: anthropic
    base_url: ${FAKE_URL}/v1
    api_key: ${ANTHROPIC_API_KEY}
    model_name: claude-test
  - name: local
    provider: ollama
    base_url: ${FAKE_URL}/v1
    model_name: llama-test
"""
    catalogue = parse_catalogue(
        text, {"FAKE_URL": fake.root_url, "ANTHROPIC_API_KEY": "sk-ant-xyz"}, timeout_seconds=2
    )
    try:
        events = await collect(catalogue.provider_for("claude"), ask("hi", model="claude-test"))
        assert text_of(events) == "Echo: hi"
        assert fake.requests[-1].path == "/v1/messages"

        events = await collect(
            catalogue.provider_for("local"), ask("yo", model="llama-test", max_output_tokens=5)
        )
        assert text_of(events) == "Echo: yo"
        sent = fake.requests[-1]
        assert sent.path == "/v1/chat/completions"
        # Ollama needs no key; the SDK still sends one, the conventional placeholder.
        assert sent.headers["authorization"] == "Bearer ollama"
        # OpenAI-compatible servers get the widely supported max_tokens.
        assert sent.body["max_tokens"] == 5
        assert "max_completion_tokens" not in sent.body
    finally:
        await catalogue.aclose()


async def test_fallback_through_the_catalogue(fake: FakeLLMServer) -> None:
    text = """
models:
  - {name: main, provider: openai, base_url: "${URL}", api_key: k, model_name: main-model,
     fallbacks: [backup]}
  - {name: backup, provider: vllm, base_url: "${URL}", model_name: backup-model}
"""
    catalogue = parse_catalogue(text, {"URL": fake.base_url}, timeout_seconds=2)
    fake.enqueue(Script(error_status=401), Script(text="from the backup"))

    async def no_sleep(_seconds: float) -> None:
        return None

    try:
        async with open_stream_with_retry(
            ask(), catalogue.stream_targets("main"), sleep=no_sleep
        ) as events:
            assert text_of([e async for e in events]) == "from the backup"
    finally:
        await catalogue.aclose()
    assert [r.body["model"] for r in fake.requests] == ["main-model", "backup-model"]
