"""Registry authentication: challenges, credentials, docker's config, and the token dance."""

from __future__ import annotations

from .challenge import Challenge, parse_www_authenticate
from .credentials import Credentials, Secret
from .dockerconfig import (
    DOCKER_HUB_CONFIG_KEY,
    DockerConfig,
    default_docker_config_path,
    load_docker_config,
    resolve_credentials,
    run_credential_helper,
)
from .token import TokenAuth, covers_scopes, normalize_scopes

__all__ = [
    "DOCKER_HUB_CONFIG_KEY",
    "Challenge",
    "Credentials",
    "DockerConfig",
    "Secret",
    "TokenAuth",
    "covers_scopes",
    "default_docker_config_path",
    "load_docker_config",
    "normalize_scopes",
    "parse_www_authenticate",
    "resolve_credentials",
    "run_credential_helper",
]
