"""Config.load: flag > environment > default, and bad values stop start-up with a clear message."""

from __future__ import annotations

import argparse
import os
from typing import Any

import pytest

from signaling.config import Config, ConfigError

CREDS = {"KELIAN_API_KEY": "APIkey", "KELIAN_API_SECRET": "secret-secret-secret-secret-secret-00"}


def _args(**values: Any) -> argparse.Namespace:
    return argparse.Namespace(**values)


def test_defaults() -> None:
    config = Config.load(None, env=CREDS)
    assert (config.http_host, config.http_port) == ("127.0.0.1", 8700)
    assert (config.media_host, config.media_port) == ("127.0.0.1", 8701)
    assert config.announced_address is None
    assert config.candidate_address == "127.0.0.1"
    assert config.redis_url is None
    assert (config.log_level, config.log_format) == ("info", "text")
    assert config.max_bitrate == 3_000_000
    assert (config.api_key, config.api_secret, config.dev_credentials) == (
        "APIkey",
        CREDS["KELIAN_API_SECRET"],
        False,
    )


def test_precedence_flag_over_env_over_default() -> None:
    env = {**CREDS, "KELIAN_HTTP_PORT": "9000", "KELIAN_MEDIA_PORT": "9001", "KELIAN_LOG_LEVEL": "DEBUG"}
    config = Config.load(_args(http_port="9100", media_port=None), env=env)
    assert config.http_port == 9100  # flag wins
    assert config.media_port == 9001  # flag not given (None): env wins
    assert config.log_level == "debug"  # env, normalised
    assert config.media_host == "127.0.0.1"  # neither: default


def test_every_env_variable_is_read() -> None:
    env = {
        **CREDS,
        "KELIAN_HTTP_HOST": "0.0.0.0",
        "KELIAN_HTTP_PORT": "1",
        "KELIAN_MEDIA_HOST": "0.0.0.0",
        "KELIAN_MEDIA_PORT": "2",
        "KELIAN_ANNOUNCED_ADDRESS": "203.0.113.7",
        "KELIAN_REDIS_URL": "redis://cache:6379/0",
        "KELIAN_LOG_LEVEL": "warning",
        "KELIAN_LOG_FORMAT": "json",
        "KELIAN_MAX_BITRATE": "1500000",
        "KELIAN_WORKERS": "3",
    }
    config = Config.load(None, env=env)
    assert config == Config(
        http_host="0.0.0.0",
        http_port=1,
        media_host="0.0.0.0",
        media_port=2,
        announced_address="203.0.113.7",
        api_key="APIkey",
        api_secret=CREDS["KELIAN_API_SECRET"],
        dev_credentials=False,
        redis_url="redis://cache:6379/0",
        log_level="warning",
        log_format="json",
        max_bitrate=1_500_000,
        workers=3,
    )
    assert config.candidate_address == "203.0.113.7"


def test_flags_may_be_ints_and_unrelated_attributes_are_ignored() -> None:
    config = Config.load(_args(http_port=8800, room="x", command="serve"), env=CREDS)
    assert config.http_port == 8800


def test_empty_env_counts_as_unset() -> None:
    config = Config.load(None, env={**CREDS, "KELIAN_REDIS_URL": "", "KELIAN_HTTP_PORT": " "})
    assert config.redis_url is None
    assert config.http_port == 8700


@pytest.mark.parametrize("value", ["abc", "70000", "-1", "80.5"])
def test_bad_port_from_env(value: str) -> None:
    with pytest.raises(ConfigError, match="KELIAN_HTTP_PORT"):
        Config.load(None, env={**CREDS, "KELIAN_HTTP_PORT": value})


def test_bad_port_from_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"--media-port.*70000"):
        Config.load(_args(media_port="70000"), env=CREDS)
    with pytest.raises(ValueError, match="'abc'"):  # ConfigError is a ValueError
        Config.load(_args(http_port="abc"), env=CREDS)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KELIAN_LOG_LEVEL", "loud"),
        ("KELIAN_LOG_FORMAT", "xml"),
        ("KELIAN_MAX_BITRATE", "fast"),
        ("KELIAN_MAX_BITRATE", "10"),
        ("KELIAN_REDIS_URL", "localhost:6379"),
        ("KELIAN_ANNOUNCED_ADDRESS", "0.0.0.0"),
        ("KELIAN_HTTP_HOST", "bad host"),
    ],
)
def test_bad_values(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.load(None, env={**CREDS, name: value})


@pytest.mark.parametrize(
    ("value", "expected"), [("3M", 3_000_000), ("500k", 500_000), ("2_500_000", 2_500_000)]
)
def test_bitrate_units(value: str, expected: int) -> None:
    assert Config.load(None, env={**CREDS, "KELIAN_MAX_BITRATE": value}).max_bitrate == expected


def test_dev_credentials_generated_when_none_given() -> None:
    first = Config.load(None, env={})
    second = Config.load(None, env={})
    assert first.dev_credentials and second.dev_credentials
    assert first.api_key.startswith("APIdev") and len(first.api_key) > len("APIdev")
    assert len(first.api_secret) >= 32
    assert (first.api_key, first.api_secret) != (second.api_key, second.api_secret)


def test_a_short_api_secret_is_refused_outside_development() -> None:
    with pytest.raises(ConfigError, match="at least 32 characters"):
        Config.load(None, env={"KELIAN_API_KEY": "APIkey", "KELIAN_API_SECRET": "x"})


def test_development_credentials_stay_on_loopback_unless_asked() -> None:
    with pytest.raises(ConfigError, match=r"--http-host 0\.0\.0\.0 is not a loopback address"):
        Config.load(None, env={"KELIAN_HTTP_HOST": "0.0.0.0"})
    with pytest.raises(ConfigError, match=r"--media-host 192\.0\.2\.1"):
        Config.load(None, env={"KELIAN_MEDIA_HOST": "192.0.2.1"})
    config = Config.load(None, env={"KELIAN_HTTP_HOST": "0.0.0.0", "KELIAN_DEV_ON_NETWORK": "1"})
    assert config.dev_credentials and config.dev_on_network
    assert Config.load(
        None, env={"KELIAN_HTTP_HOST": "::1", "KELIAN_MEDIA_HOST": "localhost"}
    ).dev_credentials
    assert not Config.load(None, env={**CREDS, "KELIAN_HTTP_HOST": "0.0.0.0"}).dev_on_network


def test_limits_are_read_and_checked() -> None:
    env = {**CREDS, "KELIAN_MAX_TRACKS": "4", "KELIAN_MESSAGE_RATE": "2.5", "KELIAN_JOIN_TIMEOUT": "3"}
    config = Config.load(None, env=env)
    assert (config.max_tracks, config.message_rate, config.join_timeout) == (4, 2.5, 3.0)
    for name, value in (("MAX_TRACKS", "0"), ("MESSAGE_RATE", "nan"), ("MAX_TOKEN_TTL", "1e12")):
        with pytest.raises(ConfigError, match=f"KELIAN_{name}"):
            Config.load(None, env={**CREDS, f"KELIAN_{name}": value})
    with pytest.raises(ConfigError, match="at least 16"):
        Config.load(None, env={**CREDS, "KELIAN_METRICS_TOKEN": "short"})


def test_key_without_secret_is_an_error() -> None:
    with pytest.raises(ConfigError, match="together"):
        Config.load(None, env={"KELIAN_API_KEY": "APIkey"})


def test_wildcard_media_host_announces_a_real_address() -> None:
    config = Config.load(None, env={**CREDS, "KELIAN_MEDIA_HOST": "0.0.0.0"})
    address = config.candidate_address
    assert address != "0.0.0.0"
    assert address.count(".") == 3


def test_workers_are_a_count_or_one_per_core() -> None:
    assert Config.load(None, env=CREDS).workers == len(os.sched_getaffinity(0)), "by default"
    assert Config.load(None, env=CREDS | {"KELIAN_DATABASE": ":memory:"}).workers == 1, "nothing to share"
    assert Config.load(None, env=CREDS | {"KELIAN_WORKERS": "3"}).workers == 3
    assert Config.load(None, env=CREDS | {"KELIAN_WORKERS": "auto"}).workers == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "999", "many"):
        with pytest.raises(ConfigError, match="KELIAN_WORKERS"):
            Config.load(None, env=CREDS | {"KELIAN_WORKERS": bad})
    with pytest.raises(ConfigError, match="database"):
        Config.load(None, env=CREDS | {"KELIAN_WORKERS": "2", "KELIAN_DATABASE": ":memory:"})
