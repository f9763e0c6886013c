"""Read what a tag or digest holds: a list's entries, or an image's platform and layers.

    result = pushmanifest.inspecting.inspect("registry.example.com/team/app:1.4")
    for entry in result.manifests:
        print(entry.platform, entry.digest)

One manifest GET (and, for an image, one GET of its config, for the platform), asking the
registry for ``pull`` only: anonymous where the registry allows it, else with the credentials a
push would use (given ones, then the docker config). Not ``inspect.py``: the package exports the
function ``pushmanifest.inspect``, which a submodule of that name would hide.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import field
from typing import Any, Optional, Union

from ._checks import check_client_options, check_instance, check_path, options_with
from ._records import record
from ._sync import run_sync
from .auth import Credentials, load_docker_config, resolve_credentials
from .errors import InvalidReferenceError, RegistryError
from .manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    descriptor_from_json,
    json_object,
)
from .platform import Platform
from .reference import Reference, is_layout_text
from .registry import ClientOptions, RegistryClient

log = logging.getLogger("pushmanifest")

LIST_MEDIA_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
IMAGE_MEDIA_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
#: Configs that are image configs (os, architecture, ...); others (artifacts) are not read.
IMAGE_CONFIG_MEDIA_TYPES = (DOCKER_CONFIG, OCI_CONFIG)


@record(frozen=True)
class InspectOptions:
    """How to reach the registry; the same meaning as in :class:`~pushmanifest.PushOptions`."""

    #: Used for the reference's registry before the docker config.
    credentials: Optional[Credentials] = None
    #: A docker config directory or file; None means $DOCKER_CONFIG or ~/.docker.
    docker_config: Optional[str] = None
    client: ClientOptions = field(default_factory=ClientOptions)

    def __post_init__(self) -> None:
        owner = "InspectOptions"
        if self.credentials is not None:
            check_instance(
                owner, "credentials", self.credentials, Credentials, "a Credentials or None"
            )
        check_path(owner, "docker_config", self.docker_config)
        check_client_options(owner, self.client)


@record(frozen=True)
class InspectResult:
    """What a reference holds. A list has :attr:`manifests`; an image :attr:`config`,
    :attr:`layers` and the :attr:`platform` its config names."""

    reference: Reference
    #: The manifest itself: its digest, media type and size.
    descriptor: Descriptor
    #: The registry's exact bytes; their sha256 is :attr:`digest`.
    data: bytes
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    manifests: tuple[Descriptor, ...] = ()
    config: Optional[Descriptor] = None
    layers: tuple[Descriptor, ...] = ()
    platform: Optional[Platform] = None
    artifact_type: str = ""

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    @property
    def size(self) -> int:
        return self.descriptor.size

    @property
    def is_list(self) -> bool:
        """A manifest list or OCI index (else an image, or an artifact manifest)."""
        return self.media_type in LIST_MEDIA_TYPES or (
            self.media_type not in IMAGE_MEDIA_TYPES and bool(self.manifests)
        )

    @property
    def total_size(self) -> Optional[int]:
        """An image's config and layers together (what a pull downloads); None for a list."""
        if self.is_list or self.config is None:
            return None
        return self.config.size + sum(layer.size for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        data: dict[str, Any] = {
            "reference": str(self.reference),
            "kind": "list" if self.is_list else "image",
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
        }
        if self.artifact_type:
            data["artifactType"] = self.artifact_type
        data["annotations"] = dict(self.annotations)
        if self.is_list:
            data["manifests"] = [_descriptor_dict(entry) for entry in self.manifests]
            return data
        data["platform"] = self.platform.to_dict() if self.platform else None
        data["config"] = _descriptor_dict(self.config) if self.config else None
        data["layers"] = [_descriptor_dict(layer) for layer in self.layers]
        data["totalSize"] = self.total_size
        return data

    def to_text(self) -> str:
        """A readable summary, for a terminal (ends with a newline)."""
        lines = [
            f"Name:        {self.reference}",
            f"MediaType:   {self.media_type or '(none)'}",
        ]
        if self.artifact_type:
            lines.append(f"Artifact:    {self.artifact_type}")
        lines += [f"Digest:      {self.digest}", f"Size:        {_human(self.size)}"]
        if not self.is_list:
            lines.append(f"Platform:    {_platform_text(self.platform)}")
            if self.config is not None:
                lines.append(
                    f"Config:      {self.config.digest}  {_human(self.config.size)}  "
                    f"{self.config.media_type}"
                )
        if self.annotations:
            lines.append("Annotations:")
            lines += [f"  {key}: {value}" for key, value in sorted(self.annotations.items())]
        if self.is_list:
            lines += ["", f"Manifests ({len(self.manifests)}):"]
            lines += _table(
                ["PLATFORM", "DIGEST", "SIZE", "MEDIA TYPE"],
                [
                    [_platform_text(e.platform), e.digest, str(e.size), e.media_type]
                    for e in self.manifests
                ],
                notes=[_annotation_lines(e.annotations) for e in self.manifests],
            )
        else:
            lines += ["", f"Layers ({len(self.layers)}):"]
            lines += _table(
                ["DIGEST", "SIZE", "MEDIA TYPE"],
                [[layer.digest, str(layer.size), layer.media_type] for layer in self.layers],
                notes=[_annotation_lines(layer.annotations) for layer in self.layers],
            )
            total = self.total_size
            if total is not None:
                lines += ["", f"Total size:  {_human(total)} (config and layers, compressed)"]
        return "\n".join(lines) + "\n"


async def inspect_async(
    ref: Union[str, Reference], options: Optional[InspectOptions] = None, **kwargs: Any
) -> InspectResult:
    """Read what ``ref`` (a tag, ``latest`` when none, or a digest) holds; async.

    ``kwargs`` are :class:`InspectOptions` fields: ``inspect_async(ref, credentials=...)``.
    Raises InputError for a bad reference, RegistryError (AuthenticationError, ...) otherwise.
    """
    check_instance("inspect", "ref", ref, (str, Reference), "an image reference (str)")
    opts = _merge_options(options, kwargs)
    if is_layout_text(ref):  # a source elsewhere; here it would name Docker Hub's library/oci
        raise InvalidReferenceError(
            f"inspect reads registries: {ref!r} is an OCI image layout on disk (skopeo inspect "
            "oci:PATH[:TAG] reads one)"
        )
    reference = ref if isinstance(ref, Reference) else Reference.parse(ref)
    if reference.tag is None and reference.digest is None:
        reference = reference.with_tag("latest")
    credentials = await asyncio.to_thread(_credentials_for, reference.registry, opts)
    if credentials is not None:
        log.debug("%s: credentials of %s", reference.registry, credentials.source or "a user")
    async with RegistryClient(
        reference.registry, credentials=credentials, options=opts.client
    ) as client:
        # Pull only: reading needs no more (docker manifest inspect asks for push too).
        client.add_scope(reference.repository, "pull")
        await client.ping()
        try:
            data, descriptor = await client.get_manifest(reference.repository, reference.identifier)
        except RegistryError as exc:
            if exc.status != 404:
                raise
            image = client.image(reference.repository, reference.identifier)
            why = (exc.code or "HTTP 404").lower().replace("_", " ")
            raise exc.reworded(f"{image} does not exist ({why})") from exc
        return await _result(client, reference, data, descriptor)


def inspect(
    ref: Union[str, Reference], options: Optional[InspectOptions] = None, **kwargs: Any
) -> InspectResult:
    """Synchronous :func:`inspect_async`. Not for use inside a running event loop."""
    return run_sync(lambda: inspect_async(ref, options, **kwargs), "inspect")


def _merge_options(options: Optional[InspectOptions], kwargs: dict[str, Any]) -> InspectOptions:
    return options_with("inspect", options, InspectOptions, "an InspectOptions or None", kwargs)


def _credentials_for(registry: str, options: InspectOptions) -> Optional[Credentials]:
    """As a push finds them: the given credentials, else the docker config's, else none."""
    if options.credentials is not None:
        return options.credentials
    config = load_docker_config(options.docker_config)
    return resolve_credentials(registry, explicit=None, docker_config=config)


async def _result(
    client: RegistryClient, reference: Reference, data: bytes, descriptor: Descriptor
) -> InspectResult:
    where = client.image(reference.repository, reference.identifier)
    body = json_object(data, where)
    media_type = descriptor.media_type
    if not media_type and isinstance(body.get("mediaType"), str):
        media_type = body["mediaType"]
    descriptor = Descriptor(media_type=media_type, digest=descriptor.digest, size=descriptor.size)
    annotations = _string_map(body.get("annotations"), f"{where} annotations")
    artifact_type = body.get("artifactType")
    common: dict[str, Any] = {
        "reference": reference,
        "descriptor": descriptor,
        "data": data,
        "annotations": annotations,
        "artifact_type": artifact_type if isinstance(artifact_type, str) else "",
    }
    children = body.get("manifests")
    if media_type in LIST_MEDIA_TYPES or (
        media_type not in IMAGE_MEDIA_TYPES and isinstance(children, list)
    ):
        if not isinstance(children, list):
            raise RegistryError(
                f"{where}: the list has no 'manifests' array", operation="inspect", image=where
            )
        manifests = tuple(
            descriptor_from_json(child, f"{where} entry {index}")
            for index, child in enumerate(children)
        )
        return InspectResult(manifests=manifests, **common)

    config_data = body.get("config")
    config = (
        descriptor_from_json(config_data, f"{where} config") if config_data is not None else None
    )
    layers_data = body.get("layers") or []
    if not isinstance(layers_data, list):
        raise RegistryError(f"{where}: 'layers' is not an array", operation="inspect", image=where)
    layers = tuple(
        descriptor_from_json(layer, f"{where} layer {index}")
        for index, layer in enumerate(layers_data)
    )
    platform = None
    if config is not None and config.media_type in IMAGE_CONFIG_MEDIA_TYPES:
        blob = await client.get_blob(reference.repository, config.digest)
        platform = Platform.from_dict(json_object(blob, f"{where} config"))
        if not platform.os and not platform.architecture:
            platform = None
    return InspectResult(config=config, layers=layers, platform=platform, **common)


def _string_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RegistryError(f"{where}: not an object", operation="inspect")
    return {str(k): str(v) for k, v in value.items()}


def _descriptor_dict(descriptor: Descriptor) -> dict[str, Any]:
    data: dict[str, Any] = {
        "digest": descriptor.digest,
        "mediaType": descriptor.media_type,
        "size": descriptor.size,
    }
    if descriptor.platform is not None:
        data["platform"] = descriptor.platform.to_dict()
    if descriptor.annotations:
        data["annotations"] = dict(descriptor.annotations)
    return data


def _platform_text(platform: Optional[Platform]) -> str:
    if platform is None or not (platform.os or platform.architecture):
        return "-"
    return str(platform)


def _annotation_lines(annotations: Mapping[str, str]) -> list[str]:
    return [f"{key}: {value}" for key, value in sorted(annotations.items())]


def _table(header: list[str], rows: list[list[str]], notes: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell, the SIZE column right-aligned; each row's notes
    (annotations) indented under it."""
    if not rows:
        return ["  (none)"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {i for i, name in enumerate(header) if name == "SIZE"}

    def line(cells: list[str]) -> str:
        padded = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return ("  " + "  ".join(padded)).rstrip()

    out = [line(header)]
    for row, row_notes in zip(rows, notes):
        out.append(line(row))
        out += [f"      {note}" for note in row_notes]
    return out


def _human(size: int) -> str:
    """``525 B``, ``4.2 KiB (4301 B)``: exact bytes always, a unit when it helps."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit} ({size} B)"
