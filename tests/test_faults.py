"""Fault injection against real registries: a flaky network never breaks a tag.

:class:`support.proxy.HttpProxy` sits in front of a real ``docker-registry`` and, on a seeded
fraction of the requests, resets the connection, answers 503 or 429 (``Retry-After: 0``), or
delays the answer. A fault happens before the request is forwarded, so the registry never sees
a request whose client saw a failure.

* At 20 % the push ends with the right list every time: read back with the tests' own client,
  same digest and size, every entry resolvable by digest in the target repository with the right
  size and media type (library in-process with a short backoff, and the CLI).
* Beyond what the retries absorb (every request failing, or ``--retries 1`` at a high rate) the
  push fails: exit status 1 and one ``error:`` line, no traceback.
* Whatever happens, a tag that exists points at a list whose every entry is in the repository.

The figures (runs, requests, faults injected by kind, pushes that ended right) are printed:
``pytest -s tests/test_faults.py`` shows them.

How much the retries absorb: a fault fails an attempt with probability 3/4 (a delay only slows
it), so at 20 % an attempt fails with p = 0.15 and a request with all its N attempts failed has
p = 0.15 ** N: 7.6e-5 for the CLI's default N = 5, which over the ~700 requests of the 20 % runs
here would fail this file about once in 20 runs, for no fault of the code. The 20 % runs use
N = 8 (p = 2.6e-7 per request) to make that about once in 5 000.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

import pushmanifest
import support.cli as support_cli
from pushmanifest import ClientOptions, Credentials, PushOptions
from pushmanifest.errors import PushManifestError
from support.images import RegistryHTTPError, SeedClient, SeededImage, seed_image
from support.proxy import HttpProxy

PLATFORMS = [
    ("amd64", "amd64", ""),
    ("arm32v6", "arm", "v6"),
    ("arm32v7", "arm", "v7"),
    ("arm64v8", "arm64", "v8"),
]
RUNS = 20
#: Runs of each series with one attempt per request (some fail part-way).
PARTIAL_RUNS = 15
RATE = 0.2
#: Attempts per request in the 20 % runs: see the module's docstring.
RETRIES = 8
#: Seconds a "delay" fault adds: a slow answer, well within the read timeout.
EXTRA_DELAY = 0.1
FAST = ClientOptions(plain_http=True, backoff=0.01, retries=RETRIES)


# -- helpers -------------------------------------------------------------------------------------


def client_for(server: Any, user: Optional[str] = None) -> SeedClient:
    """The tests' own client, straight to the registry (not through the proxy)."""
    return SeedClient(server, username=user, password=server.users[user] if user else None)


def seed_set(server: Any, repository: str, user: Optional[str] = None) -> dict[str, SeededImage]:
    with client_for(server, user) as client:
        return {
            tag: seed_image(
                server, repository, tag, architecture=arch, variant=variant, client=client
            )
            for tag, arch, variant in PLATFORMS
        }


def spec_text(host: str, source_repo: str, target: str, tags: list[str]) -> str:
    lines = [f"image: {host}/{target}", f"tags: [{', '.join(tags)}]", "manifests:"]
    for tag, arch, variant in PLATFORMS:
        lines += [f"  - image: {host}/{source_repo}:{tag}", "    platform:"]
        lines += [f"      architecture: {arch}", "      os: linux"]
        if variant:
            lines.append(f"      variant: {variant}")
    return "\n".join(lines) + "\n"


def load(host: str, source_repo: str, target: str, tags: list[str]) -> list[Any]:
    return pushmanifest.load_spec_text(spec_text(host, source_repo, target, tags), "faults.yaml")


def check_list(
    client: SeedClient,
    repository: str,
    tag: str,
    seeded: dict[str, SeededImage],
    digest: str,
    size: int,
) -> None:
    """The tag holds the list pushed, and every entry is in the repository, right."""
    body, content_type, served = client.get_manifest(repository, tag)
    assert served == digest and len(body) == size, (tag, served, digest)
    data = json.loads(body)
    assert content_type == data["mediaType"]
    by_digest = {image.digest: image for image in seeded.values()}
    assert sorted(e["digest"] for e in data["manifests"]) == sorted(by_digest)
    for entry in data["manifests"]:
        image = by_digest[entry["digest"]]
        assert (entry["size"], entry["mediaType"]) == (image.size, image.media_type)
        found = client.head_manifest(repository, entry["digest"])
        assert found == (image.media_type, image.digest, image.size), (tag, entry, found)


def whole_tags(client: SeedClient, repository: str, tags: list[str]) -> int:
    """Assert that each tag present holds a list whose every entry is in the repository.

    Returns how many of ``tags`` are present.
    """
    present = 0
    for tag in tags:
        try:
            body, _, _ = client.get_manifest(repository, tag)
        except RegistryHTTPError as exc:
            assert exc.status == 404, exc
            continue
        present += 1
        for entry in json.loads(body)["manifests"]:
            found = client.head_manifest(repository, entry["digest"])
            assert found is not None, f"{tag} names {entry['digest']}, not in {repository}"
            assert found[1:] == (entry["digest"], entry["size"])
    return present


@dataclass
class Figures:
    """What a series of runs saw, printed at its end (``pytest -s``)."""

    name: str
    runs: int = 0
    right: int = 0
    failed_cleanly: int = 0
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def add(self, proxy: HttpProxy) -> None:
        self.runs += 1
        self.requests += len(proxy.requests)
        self.faults.update(r.fault for r in proxy.faults if r.fault)

    def report(self) -> str:
        kinds = ", ".join(
            f"{kind} {self.faults[kind]}" for kind in ("reset", "503", "429", "delay")
        )
        failed = f", failed cleanly {self.failed_cleanly}" if self.failed_cleanly else ""
        text = (
            f"[faults] {self.name}: runs {self.runs}, requests {self.requests}, "
            f"faults injected {sum(self.faults.values())} ({kinds}), "
            f"pushes that ended right {self.right}/{self.runs}{failed}, "
            f"{time.monotonic() - self.started:.1f} s"
        )
        print(f"\n{text}")
        return text


@contextmanager
def faulty_proxy(server: Any) -> Iterator[HttpProxy]:
    with HttpProxy(upstream=server.host) as proxy:
        yield proxy
        assert proxy.errors == [], proxy.errors


def arm(proxy: HttpProxy, seed: int, rate: float = RATE, kinds: Any = None) -> None:
    proxy.reset()
    extra = {"kinds": kinds} if kinds else {}
    proxy.set_faults(rate, seed=seed, extra_delay=EXTRA_DELAY, **extra)


def run_cli(*args: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    return support_cli.run_cli(*args, stdin=stdin, cwd=cwd)


def assert_clean_failure(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 1, no traceback, and the failure said in one ``error:`` line, the last one."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert not result.stdout.strip(), result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    # Anything else on stderr is a retry warning or the other failures of the same wave.
    assert all(line.startswith(("warning: ", "error: ")) for line in lines), result.stderr
    return lines[-1]


# -- 20 %: every push ends right -----------------------------------------------------------------


def test_open_registry_push_survives_20_percent_faults(open_registry: Any) -> None:
    repo = "faults/same-repo"
    seeded = seed_set(open_registry, repo)
    figures = Figures("open registry, sources in the target repository, 20 %")
    with faulty_proxy(open_registry) as proxy, client_for(open_registry) as reader:
        for seed in range(RUNS):
            arm(proxy, seed)
            tags = [f"run{seed}", f"run{seed}-a", f"run{seed}-b"]
            specs = load(proxy.host, repo, f"{repo}:{tags[0]}", tags[1:])
            [result] = pushmanifest.push(specs, PushOptions(client=FAST))
            figures.add(proxy)
            assert result.written == tuple(tags)
            for tag in tags:
                check_list(reader, repo, tag, seeded, result.digest, result.size)
            figures.right += 1
    figures.report()
    assert figures.right == RUNS
    assert sum(figures.faults.values()) > 0.1 * figures.requests


def test_sources_from_another_repository_survive_20_percent_faults(open_registry: Any) -> None:
    # Each run targets a new repository: every blob is mounted and every image manifest put by
    # digest there before the list, all through the faulty proxy.
    source = "faults/sources"
    seeded = seed_set(open_registry, source)
    figures = Figures("open registry, sources mounted from another repository, 20 %")
    with faulty_proxy(open_registry) as proxy, client_for(open_registry) as reader:
        for seed in range(RUNS // 2):
            arm(proxy, 100 + seed)
            target = f"faults/mounted{seed}"
            specs = load(proxy.host, source, f"{target}:v1", ["latest"])
            [result] = pushmanifest.push(specs, PushOptions(client=FAST))
            figures.add(proxy)
            for tag in ("v1", "latest"):
                check_list(reader, target, tag, seeded, result.digest, result.size)
            figures.right += 1
        assert proxy.count("POST", "/blobs/uploads/") >= 2 * len(PLATFORMS)
    figures.report()
    assert figures.right == RUNS // 2


def test_token_registry_push_survives_20_percent_faults(token_registry: Any) -> None:
    repo = "alice/faults"
    seeded = seed_set(token_registry, repo, user="alice")
    credentials = Credentials(username="alice", password=token_registry.users["alice"])
    figures = Figures("token registry (alice), 20 %")
    with faulty_proxy(token_registry) as proxy, client_for(token_registry, "alice") as reader:
        for seed in range(RUNS // 2):
            arm(proxy, 200 + seed)
            tags = [f"run{seed}", f"run{seed}-a"]
            specs = load(proxy.host, repo, f"{repo}:{tags[0]}", tags[1:])
            options = PushOptions(credentials=credentials, client=FAST)
            [result] = pushmanifest.push(specs, options)
            figures.add(proxy)
            for tag in tags:
                check_list(reader, repo, tag, seeded, result.digest, result.size)
            figures.right += 1
    figures.report()
    assert figures.right == RUNS // 2


def test_cli_push_survives_20_percent_faults(open_registry: Any, tmp_path: Path) -> None:
    repo = "faults/cli"
    seeded = seed_set(open_registry, repo)
    figures = Figures("CLI subprocess (--plain-http --retries 8), 20 %")
    with faulty_proxy(open_registry) as proxy, client_for(open_registry) as reader:
        for seed in range(2):
            arm(proxy, 300 + seed)
            spec = tmp_path / f"spec{seed}.yaml"
            spec.write_text(spec_text(proxy.host, repo, f"{repo}:cli{seed}", ["latest"]))
            result = run_cli(
                "from-spec", str(spec), "--plain-http", "--retries", str(RETRIES), cwd=tmp_path
            )
            figures.add(proxy)
            assert result.returncode == 0, result.stderr
            assert "Traceback" not in result.stderr
            [line] = [ln for ln in result.stdout.splitlines() if ln.startswith("Digest: ")]
            _, digest, size = line.split(" ")
            for tag in (f"cli{seed}", "latest"):
                check_list(reader, repo, tag, seeded, digest, int(size))
            figures.right += 1
    figures.report()
    assert figures.right == 2


# -- beyond the retries: a clean failure, and never a broken tag ---------------------------------


def test_every_request_failing_exits_1_with_one_error_line(
    open_registry: Any, tmp_path: Path
) -> None:
    repo = "faults/hopeless"
    seed_set(open_registry, repo)
    with faulty_proxy(open_registry) as proxy, client_for(open_registry) as reader:
        proxy.set_faults(1.0, kinds=("reset", "503", "429"), seed=1)
        spec = tmp_path / "spec.yaml"
        spec.write_text(spec_text(proxy.host, repo, f"{repo}:never", ["never-a"]))
        result = run_cli("from-spec", str(spec), "--plain-http", "--retries", "2", cwd=tmp_path)
        error = assert_clean_failure(result)
        assert proxy.host in error and repo in error, error
        assert proxy.count("PUT") == 0
        assert whole_tags(reader, repo, ["never", "never-a"]) == 0
    print(f"\n[faults] rate 1.0, --retries 2: exit 1, {error!r}")


def test_retries_1_at_a_high_rate_exits_1_with_one_error_line(
    open_registry: Any, tmp_path: Path
) -> None:
    repo = "faults/one-attempt"
    seed_set(open_registry, repo)
    tags = ["once", "once-a", "once-b"]
    with faulty_proxy(open_registry) as proxy, client_for(open_registry) as reader:
        proxy.set_faults(0.6, kinds=("reset", "503", "429"), seed=7)
        spec = tmp_path / "spec.yaml"
        spec.write_text(spec_text(proxy.host, repo, f"{repo}:{tags[0]}", tags[1:]))
        result = run_cli("from-spec", str(spec), "--plain-http", "--retries", "1", cwd=tmp_path)
        error = assert_clean_failure(result)
        assert "retry" not in result.stderr  # one attempt: nothing retried
        whole_tags(reader, repo, tags)
    print(f"\n[faults] rate 0.6, --retries 1: exit 1, {error!r}")


@pytest.mark.parametrize("cross_repository", [False, True], ids=["same-repo", "mounted"])
def test_a_tag_never_points_at_a_list_with_missing_entries(
    open_registry: Any, cross_repository: bool
) -> None:
    """One attempt per request at 25 %: some pushes fail part-way; no tag is ever broken."""
    source = "faults/partial-src" if cross_repository else "faults/partial"
    seeded = seed_set(open_registry, source)
    what = "sources mounted" if cross_repository else "sources in the target repository"
    figures = Figures(f"retries 1 at 25 %, {what}")
    options = PushOptions(client=ClientOptions(plain_http=True, backoff=0.01, retries=1))
    present = 0
    with faulty_proxy(open_registry) as proxy, client_for(open_registry) as reader:
        for seed in range(PARTIAL_RUNS):
            arm(proxy, 400 + seed, rate=0.25)
            target = f"faults/partial{seed}" if cross_repository else source
            tags = [f"p{seed}", f"p{seed}-a", f"p{seed}-b"]
            specs = load(proxy.host, source, f"{target}:{tags[0]}", tags[1:])
            try:
                [result] = pushmanifest.push(specs, options)
            except PushManifestError as exc:
                assert str(exc) and "\n" not in str(exc), str(exc)
                figures.failed_cleanly += 1
            else:
                for tag in tags:
                    check_list(reader, target, tag, seeded, result.digest, result.size)
                figures.right += 1
            figures.add(proxy)
            present += whole_tags(reader, target, tags)
    text = figures.report()
    print(f"[faults] ... tags present after the runs: {present}, every one whole")
    assert figures.right + figures.failed_cleanly == PARTIAL_RUNS
    # The rate is high enough for both outcomes to occur: the test sees partial failures.
    assert figures.failed_cleanly > 0, text


# -- how a reset connection is reported ----------------------------------------------------------


def _push_through_resets(server: Any, proxy: HttpProxy, retries: int) -> PushManifestError:
    proxy.set_faults(1.0, kinds=("reset",), seed=5)
    specs = load(proxy.host, "faults/reset", "faults/reset:x", [])
    options = PushOptions(client=ClientOptions(plain_http=True, backoff=0.01, retries=retries))
    with pytest.raises(PushManifestError) as caught:
        pushmanifest.push(specs, options)
    return caught.value


def test_a_reset_connection_is_named_in_the_error(open_registry: Any) -> None:
    seed_set(open_registry, "faults/reset")
    with faulty_proxy(open_registry) as proxy:
        error = str(_push_through_resets(open_registry, proxy, retries=1))
    assert "ReadError: ReadError" not in error, error
    assert "reset" in error.lower(), error


def test_a_retried_reset_says_why_in_the_warning(
    open_registry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seed_set(open_registry, "faults/reset")
    with faulty_proxy(open_registry) as proxy, caplog.at_level("WARNING", logger="pushmanifest"):
        _push_through_resets(open_registry, proxy, retries=2)
    retries = [r.getMessage() for r in caplog.records if "retry 1 of 1" in r.getMessage()]
    assert retries, caplog.text
    assert not [m for m in retries if ": ; retry" in m], retries
