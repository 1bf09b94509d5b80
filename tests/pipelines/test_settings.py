"""Settings: parsed by type, a type with no parser refused at once, secrets kept out of ``repr``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipelines.errors import SettingsError
from pipelines.settings import Settings

SECRETS = {
    "RAG_EMBEDDING_API_KEY": "sk-埋め込み-0123",
    "RAG_CHROMA_TOKEN": "chroma-トークン-4567",
    "RAG_LLM_API_KEY": "sk-回答-89ab",
    "RAG_API_KEY": "鍵-cdef",
}


def test_each_setting_is_parsed_by_its_type() -> None:
    settings = Settings.from_env(
        {
            "RAG_CHUNK_TOKENS": "64",
            "RAG_KEYWORD_WEIGHT": "0.3",
            "RAG_CHUNK_CONTEXT": "off",
            "RAG_DATA_DIR": "~/文書",
            "RAG_ORIGINALS_DIR": "/srv/原本",
            "RAG_RETRIEVAL_MODE": "keyword",
            "RAG_QUERY_PREFIX": "",
            "RAG_THREADS": "",  # set to nothing: the default
            "RAG_POLICY_FILE": "/etc/rag/権限.txt",
        }
    )
    assert settings.policy_file == Path("/etc/rag/権限.txt")
    assert Settings.from_env({}).policy_file is None
    assert (settings.chunk_tokens, settings.keyword_weight, settings.chunk_context) == (64, 0.3, False)
    assert settings.data_dir == Path("~/文書").expanduser()
    assert settings.originals_dir == Path("/srv/原本")
    assert (settings.retrieval_mode, settings.query_prefix, settings.threads) == ("keyword", "", 0)
    with pytest.raises(SettingsError, match="RAG_TOP_K は整数で"):
        Settings.from_env({"RAG_TOP_K": "五"})


def test_a_setting_of_a_type_with_no_parser_is_a_programming_error() -> None:
    @dataclasses.dataclass(frozen=True)
    class Extended(Settings):
        weights: tuple[float, ...] = ()

    with pytest.raises(TypeError, match=r"Settings\.weights") as raised:
        Extended.from_env({})  # unset, and still refused: the mistake is the code's, not the environment's
    assert "tuple[float, ...]" in str(raised.value)
    assert "weights" in str(raised.value)


def test_secrets_are_hidden_from_repr_and_str_but_shown_as_set() -> None:
    settings = Settings.from_env({**SECRETS, "RAG_CHROMA_HOST": "chroma.example.jp", "RAG_LLM_MODEL": "qwen"})
    assert settings.embedding_api_key == "sk-埋め込み-0123"  # the value itself is there for the code
    for shown in (repr(settings), str(settings), f"{settings}"):
        for secret in SECRETS.values():
            assert secret not in shown
        assert "embedding_api_key='***'" in shown
        assert "chroma_token='***'" in shown
        assert "llm_api_key='***'" in shown
        assert "api_key='***'" in shown
        assert "chroma_host='chroma.example.jp'" in shown  # the rest as it is
    unset = repr(Settings())
    assert "embedding_api_key=''" in unset
    assert "***" not in unset


def test_the_secret_settings_are_the_keys_and_tokens() -> None:
    secret = {each.name for each in dataclasses.fields(Settings) if each.metadata.get("secret")}
    assert secret == {
        "embedding_api_key",
        "chroma_token",
        "llm_api_key",
        "api_key",
        "ldap_bind_password",
        "mcp_key",
        "smb_password",
    }


def test_the_page_url_must_be_a_web_address() -> None:
    assert Settings.from_env({"RAG_PAGE_URL": "https://docs.example.jp/"}).page_url == "https://docs.example.jp/"
    with pytest.raises(SettingsError, match="RAG_PAGE_URL は http:// か https://"):
        Settings.from_env({"RAG_PAGE_URL": "docs.example.jp"})
