"""The environment variables' parsers, for Parley's own settings: they live in chat/env.py,
since the app reads Parley's settings from the environment too when a host project does
not define them (chat/conf.py)."""

from chat.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    load_secret_key,
    parse_networks,
    parse_origins,
    parse_rate_limit,
)

__all__ = [
    "env_bool",
    "env_choice",
    "env_float",
    "env_int",
    "env_list",
    "load_secret_key",
    "parse_networks",
    "parse_origins",
    "parse_rate_limit",
]
