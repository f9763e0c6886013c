"""A run's machine-readable result (``--metadata-file``), for the steps after a push: signing
(``cosign sign NAME@DIGEST``), provenance, deployment.

    results = pushmanifest.push(specs)
    document = pushmanifest.metadata.run_metadata(results)
    with pushmanifest.metadata.MetadataFile("metadata.json") as file:  # checked now
        file.write(document)  # all or nothing: a temporary file renamed over the path

The document's shape is version 1 (:data:`METADATA_VERSION`): keys are only ever added to it;
a change to a key's meaning is a new version. Each list's object also carries the keys that
``docker buildx`` writes to its own ``--metadata-file`` (``containerimage.digest``,
``containerimage.descriptor``, ``image.name``), so tools that read buildx's file read this one;
a document of exactly one list carries them at its top level too, as ``buildx build``'s does.

A file is written whole or not at all: the document goes to a temporary file in the same
directory, is flushed to disk (fsync), then renamed over the path (``os.replace``), so a reader
sees the old file or the new one, never half of one. The temporary file is created when
:class:`MetadataFile` is made, so a path that cannot be written fails before anything is pushed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import stat
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional, TypedDict

from .errors import InputError, PushManifestError

if TYPE_CHECKING:
    from .pusher import PushResult

#: The version of the document's shape (its ``version`` key).
METADATA_VERSION = 1


class BuildxDescriptor(TypedDict):
    """What ``docker buildx`` calls a descriptor in its metadata file."""

    mediaType: str
    digest: str
    size: int


class EntryMetadata(TypedDict):
    """One entry of a list."""

    digest: str
    size: int
    mediaType: str
    #: The OCI/Docker platform object; None for an entry without one.
    platform: Optional[dict[str, object]]
    annotations: dict[str, str]
    #: The source the entry came from, as a full reference (the entries of a list that was a
    #: source share it).
    source: str
    #: NAME@DIGEST of the entry in the target repository (where the push put it).
    image: str


class ReferrerMetadata(TypedDict):
    """An artifact copied along with an entry (a signature, an attestation, an SBOM)."""

    #: The digest of the entry it refers to.
    subject: str
    digest: str
    size: int
    mediaType: str
    #: OCI 1.1's artifactType (else the config's media type; for cosign's tags, the first
    #: layer's media type).
    artifactType: str
    #: The source repository it was found in, as the spec named the image.
    source: str
    #: NAME@DIGEST of the artifact in the target repository.
    image: str
    #: How it was found: "referrers API", "referrers tag" or "cosign tag".
    found: str
    #: cosign's tag it is written under in the target too (NAME:sha256-<hex>.sig); None for
    #: the others.
    tag: Optional[str]


ListMetadata = TypedDict(
    "ListMetadata",
    {
        # The target repository, fully qualified: registry/repository.
        "name": str,
        "digest": str,
        "size": int,
        "mediaType": str,
        # NAME@DIGEST: what to sign (cosign sign), pull or deploy.
        "image": str,
        # Every tag of the list, as full references NAME:TAG.
        "tags": list[str],
        # The tags this run wrote (the others already held the digest, or, after a failure,
        # were not written: see the document's notWritten).
        "written": list[str],
        "annotations": dict[str, str],
        "manifests": list[EntryMetadata],
        # OCI 1.1's fields of the index: its artifactType and the descriptor of its subject
        # (None: not set).
        "artifactType": Optional[str],
        "subject": Optional[BuildxDescriptor],
        # The artifacts referring to the entries, copied into the target repository with them.
        "referrers": list[ReferrerMetadata],
        # docker buildx's keys: the same digest, descriptor and NAME:TAG,NAME:TAG.
        "containerimage.digest": str,
        "containerimage.descriptor": BuildxDescriptor,
        "image.name": str,
    },
)


#: docker buildx's keys at the document's top level: only when it holds exactly one list.
_TopBuildxKeys = TypedDict(
    "_TopBuildxKeys",
    {
        "containerimage.digest": str,
        "containerimage.descriptor": BuildxDescriptor,
        "image.name": str,
    },
    total=False,
)


class RunMetadata(_TopBuildxKeys):
    """The whole document."""

    version: int
    dryRun: bool
    # True when the run finished: every list at every tag (a dry run: every list resolved).
    complete: bool
    # The error that ended the run, in one line (as printed on stderr); None when complete.
    error: Optional[str]
    lists: list[ListMetadata]
    # What a failed run did not write: "IMAGE:TAG[, :TAG...]" per list.
    notWritten: list[str]


def list_metadata(result: PushResult) -> ListMetadata:
    """One list's object (also :meth:`PushResult.metadata`)."""
    target = result.target
    name = target.name
    tags = [str(target.with_tag(tag)) for tag in result.tags]
    index = result.manifest_list
    subject = index.subject
    entries: list[EntryMetadata] = [
        {
            "digest": entry.descriptor.digest,
            "size": entry.descriptor.size,
            "mediaType": entry.descriptor.media_type,
            "platform": entry.platform.to_dict() if entry.platform else None,
            "annotations": dict(entry.descriptor.annotations),
            "source": str(entry.image),
            "image": f"{name}@{entry.descriptor.digest}",
        }
        for entry in result.entries
    ]
    return {
        "name": name,
        "digest": result.digest,
        "size": result.size,
        "mediaType": result.media_type,
        "image": f"{name}@{result.digest}",
        "tags": tags,
        "written": [str(target.with_tag(tag)) for tag in result.written],
        "annotations": dict(index.annotations),
        "manifests": entries,
        "artifactType": index.artifact_type or None,
        "subject": (
            None
            if subject is None
            else _descriptor(subject.media_type, subject.digest, subject.size)
        ),
        "referrers": [
            {
                "subject": referrer.subject,
                "digest": referrer.digest,
                "size": referrer.size,
                "mediaType": referrer.media_type,
                "artifactType": referrer.artifact_type,
                "source": str(referrer.source),
                "image": f"{name}@{referrer.digest}",
                "found": referrer.found,
                "tag": str(target.with_tag(referrer.tag)) if referrer.tag else None,
            }
            for referrer in result.referrers
        ],
        "containerimage.digest": result.digest,
        "containerimage.descriptor": _descriptor(result.media_type, result.digest, result.size),
        "image.name": ",".join(tags),
    }


def _descriptor(media_type: str, digest: str, size: int) -> BuildxDescriptor:
    return {"mediaType": media_type, "digest": digest, "size": size}


def run_metadata(
    results: Sequence[PushResult],
    *,
    dry_run: Optional[bool] = None,
    not_written: Sequence[str] = (),
    error: Optional[str] = None,
) -> RunMetadata:
    """The document of a run that gave ``results`` (or, after a failure, wrote them).

    ``dry_run`` defaults to the results' own flag (False when there are none).
    """
    lists = [result.metadata() for result in results]
    if dry_run is None:
        dry_run = any(result.dry_run for result in results)
    document: RunMetadata = {
        "version": METADATA_VERSION,
        "dryRun": dry_run,
        "complete": error is None and not not_written,
        "error": error,
        "lists": lists,
        "notWritten": list(not_written),
    }
    if len(lists) == 1:
        [only] = lists
        document["containerimage.digest"] = only["containerimage.digest"]
        document["containerimage.descriptor"] = only["containerimage.descriptor"]
        document["image.name"] = only["image.name"]
    return document


def failed_run_metadata(exc: BaseException, *, dry_run: bool = False) -> RunMetadata:
    """The document of a run that :func:`~pushmanifest.push` ended with ``exc``: the lists it
    wrote before it failed (:func:`~pushmanifest.pusher.partial_push`), those it did not, and
    the error in one line."""
    from .pusher import partial_push

    partial = partial_push(exc)
    if isinstance(exc, KeyboardInterrupt):
        signum = getattr(exc, "signum", signal.SIGINT)
        message = "terminated" if signum == signal.SIGTERM else "interrupted"
    else:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return run_metadata(
        partial.written if partial else (),
        dry_run=dry_run,
        not_written=partial.not_written if partial else (),
        error=message,
    )


def dumps_metadata(document: RunMetadata) -> str:
    """The document as the file holds it: indented JSON, ending with a newline."""
    return json.dumps(document, indent=2) + "\n"


class MetadataFile:
    """Where a run's document goes, checked when made; written whole or not at all.

    ``path``: a file path, or ``"-"`` for standard output. A regular file (or a path not there
    yet) is written atomically: its temporary file ``.NAME.XXXXXXXX.tmp`` is created now, next
    to it (so a missing directory, a read-only one, or a directory at ``path`` is an
    :class:`InputError` before anything else happens), then filled, synced and renamed over
    ``path`` by :meth:`write`. An existing file keeps its permission bits; a new one gets the
    usual ones (0666 less the umask); a symbolic link is followed (the file it names is replaced,
    the link stays). Something at ``path`` that is not a regular file (a FIFO, ``/dev/stdout``)
    cannot be replaced: it is written in place, in one write.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: Optional[int] = None
        self._temporary: Optional[str] = None
        self._mode: Optional[int] = None
        self._destination = path
        self._written = False
        if path == "-":
            return
        if not path:
            raise InputError("metadata file: an empty path")
        try:
            info: Optional[os.stat_result] = os.stat(path)
        except FileNotFoundError:
            info = None
        except OSError as exc:
            raise InputError(f"cannot write the metadata file {path}: {_reason(exc)}") from None
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise InputError(f"cannot write the metadata file {path}: it is a directory")
        if info is not None and not stat.S_ISREG(info.st_mode):
            if not os.access(path, os.W_OK):
                raise InputError(f"cannot write the metadata file {path}: permission denied")
            return  # written in place
        #: Where the rename goes: through a symbolic link to the file it names (the link stays).
        self._destination = os.path.realpath(path)
        if info is not None:
            self._mode = stat.S_IMODE(info.st_mode)
        directory, base = os.path.split(self._destination)
        temporary = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)  # POSIX | Windows
        try:
            # 0o666: the kernel applies the umask, as for any file a program creates.
            self._fd = os.open(temporary, flags, 0o666)
        except OSError as exc:
            hint = " (its directory must exist)" if isinstance(exc, FileNotFoundError) else ""
            raise InputError(
                f"cannot write the metadata file {path}: {_reason(exc)}{hint}"
            ) from None
        self._temporary = temporary

    def __enter__(self) -> MetadataFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def write(self, document: RunMetadata) -> None:
        """Put ``document`` at the path, whole (once; a second call is an error)."""
        if self._written:
            raise RuntimeError("a MetadataFile is written once")
        self._written = True
        data = dumps_metadata(document).encode("utf-8")
        if self.path == "-":
            sys.stdout.flush()
            sys.stdout.write(data.decode("utf-8"))
            sys.stdout.flush()
            return
        try:
            if self._fd is None:  # a FIFO or a device: in place
                with open(self.path, "wb") as stream:
                    stream.write(data)
                return
            _write_all(self._fd, data)
            if self._mode is not None and hasattr(os, "fchmod"):  # Windows has no modes
                os.fchmod(self._fd, self._mode)
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            assert self._temporary is not None
            os.replace(self._temporary, self._destination)
            self._temporary = None
            _sync_directory(os.path.dirname(self._destination))
        except OSError as exc:
            self.discard()
            raise PushManifestError(
                f"cannot write the metadata file {self.path}: {_reason(exc)}"
            ) from None

    def discard(self) -> None:
        """Remove the temporary file, if it is still there (the path is left as it was)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temporary)
            self._temporary = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_directory(directory: str) -> None:
    """Make the rename itself durable; where directories cannot be opened, it is skipped."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


__all__ = [
    "METADATA_VERSION",
    "BuildxDescriptor",
    "EntryMetadata",
    "ListMetadata",
    "MetadataFile",
    "RunMetadata",
    "dumps_metadata",
    "failed_run_metadata",
    "list_metadata",
    "run_metadata",
]
