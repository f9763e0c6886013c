"""A run's connection set-up started while its spec still loads (issue 12).

Loading a spec costs the imports of yaml and pydantic and the validation (~250 ms); a push then
pays DNS, TCP and TLS to each registry, the ping and the token before its first HEAD. Here those
start first: :func:`scan_spec_text` finds the image references of the raw text (no yaml: a
look at ``image:`` lines), :class:`Warmup` opens connections to their registries, probes a
loopback registry's scheme, and makes the ping and the token where the run needs them (with
the scopes the run will ask for, so that its token is this one), and
:func:`push_loading_async` loads the spec in a worker thread meanwhile, then hands the clients
to :func:`~pushmanifest.pusher.push_async`. A wrong guess costs an unused connection; nothing is
written before the spec has loaded, and a spec that fails to load fails as it would have,
the warm-up cancelled and closed first.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Callable, Optional

from .._records import record
from ..errors import InputError
from ..reference import Reference, is_layout_text

if TYPE_CHECKING:
    from ..auth import DockerConfig
    from ..registry import RegistryClient
    from ..spec import ManifestListSpec
    from .results import PushOptions, PushResult

__all__ = [
    "MAX_WARM_HOSTS",
    "ScannedImage",
    "Warmup",
    "push_loading_async",
    "scan_spec_text",
    "warm_scopes",
]

#: Registries warmed at most (the first the spec names).
MAX_WARM_HOSTS = 4
#: ``image:`` lines looked at, at most, and the characters of text scanned.
MAX_SCANNED_IMAGES = 1000
MAX_SCANNED_CHARS = 1 << 20

# "image: ref" as a block mapping key, at the start of a line or after a sequence's "- ".
_IMAGE_LINE = re.compile(
    r"^(?P<indent>[ ]*)(?P<dash>-[ ]+)?image[ \t]*:[ \t]+(?P<value>[^\s#]+)[ \t]*(?:#.*)?$",
    re.MULTILINE,
)

_ANY_IMAGE_KEY = re.compile(r"\bimage['\"]?[ \t]*:")


@record(frozen=True)
class ScannedImage:
    """An image reference of a raw spec: a list's target (a document's top-level ``image:``) or
    one of its entries' sources."""

    reference: Reference
    target: bool


def scan_spec_text(text: str) -> tuple[list[ScannedImage], bool]:
    """The image references of a spec's raw text, and whether every ``image:`` line was read
    (False where one holds a ${VAR}, a flow mapping, or is not a reference yet)."""
    found: list[ScannedImage] = []
    complete = len(text) <= MAX_SCANNED_CHARS
    count_lines = 0
    for match in _IMAGE_LINE.finditer(text[:MAX_SCANNED_CHARS]):
        count_lines += 1
        if count_lines > MAX_SCANNED_IMAGES:
            return found, False
        value = match.group("value").strip("'\"")
        if is_layout_text(value):
            continue  # an OCI layout on disk: no registry, no scope
        try:
            if "$" in value:
                raise InputError(value)
            reference = Reference.parse(value)
        except InputError:
            complete = False
            continue
        target = not match.group("indent") and not match.group("dash")
        found.append(ScannedImage(reference, target))
    # A flow mapping ("- {image: ...}") or a key in quotes is not read: say so.
    if len(_ANY_IMAGE_KEY.findall(text[:MAX_SCANNED_CHARS])) > count_lines:
        complete = False
    return found, complete


def warm_scopes(images: Iterable[ScannedImage], dry_run: bool) -> dict[str, list[str]]:
    """Per registry, the scopes a run of these images registers (see ``_Run.push``)."""
    scopes: dict[str, list[str]] = {}
    for image in images:
        ref = image.reference
        actions = "pull" if dry_run or not image.target else "pull,push"
        scopes.setdefault(ref.registry, []).append(f"repository:{ref.repository}:{actions}")
    return scopes


class Warmup:
    """Clients of a run's registries, set up ahead: opened connections, ping, token.

    :meth:`start` them (on the run's event loop), hand them to the run (:meth:`claim`), and
    :meth:`aclose` what is left however the run ended.
    """

    def __init__(self, options: PushOptions) -> None:
        self.options = options
        self._clients: dict[str, RegistryClient] = {}
        self._explicit: dict[str, bool] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._all: list[RegistryClient] = []
        self._docker_config: Optional[DockerConfig] = None
        self._closed = False

    @classmethod
    def start(cls, texts: Sequence[str], options: PushOptions) -> Warmup:
        """Start warming the registries ``texts`` (raw specs) name, on the running loop."""
        warmup = cls(options)
        images: list[ScannedImage] = []
        complete = True
        for text in texts:
            found, whole = scan_spec_text(text)
            images += found
            complete = complete and whole
        # A connection per request of the run's first wave: a HEAD per source, and per target
        # unless a dry run (without --append) leaves the targets alone.
        heads_targets = not options.dry_run or options.append
        registries: dict[str, int] = {}
        targets = set()
        for image in images:
            registry = image.reference.registry
            heads = 1 if heads_targets or not image.target else 0
            registries[registry] = registries.get(registry, 0) + heads
            if image.target:
                targets.add(registry)
        scopes = warm_scopes(images, options.dry_run)
        for registry in list(registries)[:MAX_WARM_HOSTS]:
            explicit = options.credentials is not None and registry in targets
            connections = min(max(1, registries[registry]), max(1, options.client.max_concurrency))
            # The token only where every scope is known: else the run would need another.
            warmup._tasks[registry] = asyncio.ensure_future(
                warmup._warm(registry, explicit, scopes[registry] if complete else [], connections)
            )
            warmup._explicit[registry] = explicit
        return warmup

    async def launched(self) -> None:
        """Return once every registry's set-up is under way (its connections opening, or its
        credentials being looked up), so that the spec's loader thread starts after it.

        Two threads that both run Python at once share one GIL and take turns every few
        milliseconds: the network layers imported here while the loader imports yaml and
        pydantic cost ~40 ms more CPU before the first request (N=2, open registry: 1.36x the
        floor's CPU instead of 1.2x). Once launched, this thread mostly waits on the network.
        """
        if not self._tasks:
            return
        # What the tasks import, imported here first: the network layers, and before 3.11
        # the modules httpcore and anyio import on a first connection (else imported in this
        # thread while the loader thread runs: ~45 ms of the two taking turns, 300 context
        # switches). From 3.11 connections are asyncio's (netbackend.AsyncioBackend).
        if sys.version_info < (3, 11):
            import importlib

            for module in ("anyio._backends._asyncio", "httpcore._backends.anyio"):
                importlib.import_module(module)
        from ..registry import RegistryClient  # noqa: F401
        from ..registry.warmup import warm_client  # noqa: F401

        # One step runs each task to its first wait (a credential helper's thread, or the
        # connections' tasks created); the next starts those connections.
        for _ in range(2):
            await asyncio.sleep(0)

    async def _warm(
        self, registry: str, explicit: bool, scopes: list[str], connections: int
    ) -> None:
        from ..auth import load_docker_config
        from ..registry import RegistryClient
        from ..registry.warmup import warm_client

        credentials = self.options.credentials if explicit else None
        if not explicit:  # docker's config: read here; a credential helper runs in a thread
            if self._docker_config is None:  # (once for every registry warmed)
                self._docker_config = load_docker_config(self.options.docker_config)
            config = self._docker_config
            if config.runs_helper_for(registry):
                credentials = await asyncio.to_thread(config.credentials_for, registry)
            else:  # (no thread: the connections start now, before the spec's loader does)
                credentials = config.credentials_for(registry)
        client = RegistryClient(registry, credentials=credentials, options=self.options.client)
        self._clients[registry] = client
        self._all.append(client)
        if self._closed:
            return
        if scopes:
            client.auth.add_scopes(scopes)
            await warm_client(client, connections)
        else:
            await warm_client(client, connections, ping=False)

    async def claim(
        self, registries: Iterable[str], targets: set[str]
    ) -> dict[str, RegistryClient]:
        """The warmed clients of ``registries`` whose credentials the run would choose (those
        of a target with explicit credentials, or not), once their set-up is done (it failed
        quietly where it did: the run meets the failure again, and reports it). Those of other
        registries are stopped."""
        explicit = self.options.credentials is not None
        wanted = {r for r in registries if self._explicit.get(r) == (explicit and r in targets)}
        for registry, task in self._tasks.items():
            if registry not in wanted:
                task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        claimed = {r: c for r, c in self._clients.items() if r in wanted}
        for registry in claimed:
            del self._clients[registry]
        return claimed

    async def aclose(self) -> None:
        """Stop what is still starting; close the clients nobody claimed."""
        self._closed = True
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        from ..registry.warmup import close_ready

        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
        # The run closed the clients it claimed; what they never used is closed here.
        await asyncio.gather(*(close_ready(c) for c in self._all), return_exceptions=True)


async def push_loading_async(
    load: Callable[[], Sequence[ManifestListSpec]],
    options: PushOptions,
    *,
    texts: Sequence[str] = (),
) -> list[PushResult]:
    """Push the lists ``load()`` returns, calling it in a worker thread while the registries the
    raw spec ``texts`` name are warmed (:class:`Warmup`). What ``load`` raises is raised, once
    the warm-up has been stopped and closed. ``load`` must not wait for input that may never
    come (standard input, a FIFO): a signal cannot stop a worker thread."""
    from .run import push_async

    warmup = Warmup.start(texts, options)
    try:
        await warmup.launched()
        specs = await asyncio.get_running_loop().run_in_executor(None, load)
        return await push_async(specs, options, warmup=warmup)
    finally:
        await warmup.aclose()


def read_spec_text(path: str, limit: int = MAX_SCANNED_CHARS) -> Optional[str]:
    """A spec file's raw text for :class:`Warmup`; None where it is not a regular file (a FIFO
    or a device must be read once, by the loader) or cannot be read (the loader will say why)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as stream:
            return stream.read(limit).decode("utf-8", "replace")
    except (OSError, ValueError):
        return None
