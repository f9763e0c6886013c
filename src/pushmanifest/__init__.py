"""pushmanifest: push multi-architecture manifest lists to any container registry.

    import pushmanifest

    specs = pushmanifest.load_spec_file("multi-arch-manifest.yaml")
    for result in pushmanifest.push(specs):
        print(result.digest, result.size)

Names are imported lazily, so that ``pushmanifest --version`` does not pay for httpx and pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "push": "pusher",
    "inspect": "inspecting",
    "inspect_async": "inspecting",
    "InspectOptions": "inspecting",
    "InspectResult": "inspecting",
    "spec_from_args": "fromargs",
    "push_async": "pusher",
    "PushOptions": "pusher",
    "PushResult": "pusher",
    "PushedEntry": "pusher",
    "Referrer": "pusher",
    "ClientOptions": "registry",
    "RegistryClient": "registry",
    "load_spec_file": "spec",
    "load_spec_text": "spec",
    "load_spec_stream": "spec",
    "ManifestListSpec": "spec",
    "ManifestEntrySpec": "spec",
    "Reference": "reference",
    "LayoutReference": "reference",
    "Platform": "platform",
    "Descriptor": "manifest",
    "ManifestList": "manifest",
    "build_manifest_list": "manifest",
    "Credentials": "auth",
    "Secret": "auth",
    "PushManifestError": "errors",
    "InputError": "errors",
    "SpecError": "errors",
    "InvalidReferenceError": "errors",
    "InvalidPlatformError": "errors",
    "RegistryError": "errors",
    "AuthenticationError": "errors",
    "NetworkError": "errors",
    "DigestMismatchError": "errors",
    "MissingSourcesError": "errors",
}

__all__ = [
    "AuthenticationError",
    "ClientOptions",
    "Credentials",
    "Descriptor",
    "DigestMismatchError",
    "InputError",
    "InspectOptions",
    "InspectResult",
    "InvalidPlatformError",
    "InvalidReferenceError",
    "LayoutReference",
    "ManifestEntrySpec",
    "ManifestList",
    "ManifestListSpec",
    "MissingSourcesError",
    "NetworkError",
    "Platform",
    "PushManifestError",
    "PushOptions",
    "PushResult",
    "PushedEntry",
    "Reference",
    "Referrer",
    "RegistryClient",
    "RegistryError",
    "Secret",
    "SpecError",
    "__version__",
    "build_manifest_list",
    "inspect",
    "inspect_async",
    "load_spec_file",
    "load_spec_stream",
    "load_spec_text",
    "push",
    "push_async",
    "spec_from_args",
]

if TYPE_CHECKING:
    from .auth import Credentials, Secret
    from .errors import (
        AuthenticationError,
        DigestMismatchError,
        InputError,
        InvalidPlatformError,
        InvalidReferenceError,
        MissingSourcesError,
        NetworkError,
        PushManifestError,
        RegistryError,
        SpecError,
    )
    from .fromargs import spec_from_args
    from .inspecting import InspectOptions, InspectResult, inspect, inspect_async
    from .manifest import Descriptor, ManifestList, build_manifest_list
    from .platform import Platform
    from .pusher import PushedEntry, PushOptions, PushResult, Referrer, push, push_async
    from .reference import LayoutReference, Reference
    from .registry import ClientOptions, RegistryClient
    from .spec import (
        ManifestEntrySpec,
        ManifestListSpec,
        load_spec_file,
        load_spec_stream,
        load_spec_text,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pushmanifest' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
