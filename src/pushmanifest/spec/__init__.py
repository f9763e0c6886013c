"""The YAML spec: pydantic models, loading with FILE:LINE:COL errors, ``${VAR}`` expansion.

A spec file holds one manifest list per YAML document, in manifest-tool's format::

    image: registry.example.com/app:1.0
    tags: [latest]
    manifests:
      - image: registry.example.com/app:1.0-amd64
        platform: {os: linux, architecture: amd64}

Loading composes the YAML into nodes (which know their line and column), builds plain Python data
from them while remembering where every key and value came from, and validates that data with
the pydantic models. Every problem found, in every document, is reported at once as a
:class:`~pushmanifest.errors.SpecError`, each at its ``FILE:LINE:COL`` and in plain words.

Specs can be built in code too (``ManifestListSpec(image=..., manifests=[...])``); their problems
raise :class:`SpecError` as well, named by path rather than position.

The names below are the package's interface; its modules are its rooms:

* :mod:`.models`: the pydantic models and their validators;
* :mod:`.loading`: text, files and streams to models (size limit, documents, notices);
* :mod:`.nodes`: YAML nodes to data with positions (aliases, merge keys and their limits);
* :mod:`.variables`: ``${VAR}`` expansion;
* :mod:`.problems`: validation errors in plain words, at positions;
* :mod:`.diagnostics`: YAML syntax errors in plain words.

pydantic is imported by this package and no other module of pushmanifest's: the CLI imports it
lazily, so that commands which do not read a spec do not pay for it.
"""

from __future__ import annotations

from ..errors import SpecError, SpecProblem
from .loading import MAX_SPEC_BYTES, load_spec_file, load_spec_stream, load_spec_text
from .models import ManifestEntrySpec, ManifestListSpec, PlatformSpec
from .problems import CODE_FILENAME, ENTRY_KEYS, LIST_KEYS, PLATFORM_KEYS

__all__ = [
    "CODE_FILENAME",
    "ENTRY_KEYS",
    "LIST_KEYS",
    "MAX_SPEC_BYTES",
    "PLATFORM_KEYS",
    "ManifestEntrySpec",
    "ManifestListSpec",
    "PlatformSpec",
    "SpecError",
    "SpecProblem",
    "load_spec_file",
    "load_spec_stream",
    "load_spec_text",
]
