"""--append without churn and without lost entries under concurrency; --force; --wait (issue 9).

All against a real docker-registry; lists are read back with the tests' independent client, and
requests are counted by the test proxy in front of the registry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Optional

import pytest

import pushmanifest
from pushmanifest import ClientOptions, ManifestListSpec
from pushmanifest import pusher as pusher_module
from support.cli import run_cli
from support.images import (
    DOCKER_MANIFEST_LIST,
    SeedClient,
    SeededImage,
    delete_manifest,
    read_manifest,
    seed_image,
)
from support.proxy import HttpProxy

pytestmark = pytest.mark.registry

FAST = ClientOptions(plain_http=True, backoff=0.01)

#: Ten platforms, one per concurrent appender.
TEN_PLATFORMS = [
    ("amd64", "amd64", ""),
    ("arm64", "arm64", "v8"),
    ("armv6", "arm", "v6"),
    ("armv7", "arm", "v7"),
    ("386", "386", ""),
    ("ppc64le", "ppc64le", ""),
    ("s390x", "s390x", ""),
    ("riscv64", "riscv64", ""),
    ("mips64le", "mips64le", ""),
    ("loong64", "loong64", ""),
]


def platform_of(arch: str, variant: str) -> dict[str, str]:
    return {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}


def spec_for(target: str, sources: list[tuple[str, dict[str, str]]]) -> ManifestListSpec:
    return ManifestListSpec(
        image=target,
        manifests=[{"image": image, "platform": platform} for image, platform in sources],
    )


def list_of(server: Any, repository: str, tag: str) -> tuple[dict[str, Any], str]:
    body, _, digest = read_manifest(server, repository, tag)
    return json.loads(body), digest


def manifest_puts(proxy: HttpProxy, repository: str, tag: str) -> int:
    return proxy.count("PUT", f"/v2/{repository}/manifests/{tag}")


def put_list(server: Any, repository: str, tag: str, images: list[SeededImage]) -> str:
    """Write a list with the independent client: a concurrent run, as far as ours can tell."""
    body = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [
            {
                "mediaType": image.media_type,
                "size": image.size,
                "digest": image.digest,
                "platform": image.platform,
            }
            for image in images
        ],
    }
    with SeedClient(server) as client:
        return client.put_manifest(repository, tag, json.dumps(body).encode(), DOCKER_MANIFEST_LIST)


# -- no churn (point 3) -------------------------------------------------------------------------


def test_append_replaces_in_place_and_an_identical_entry_changes_nothing(
    open_registry: Any,
) -> None:
    repo = "append/in-place"
    amd = seed_image(open_registry, repo, "amd64", architecture="amd64")
    arm = seed_image(open_registry, repo, "arm64", architecture="arm64", variant="v8")
    amd2 = seed_image(open_registry, repo, "amd64-rebuilt", architecture="amd64")
    riscv = seed_image(open_registry, repo, "riscv64", architecture="riscv64")
    with HttpProxy(upstream=open_registry.host) as proxy:
        host = proxy.host
        amd64 = platform_of("amd64", "")
        pushmanifest.push(
            spec_for(
                f"{host}/{repo}:latest",
                [
                    (f"{host}/{repo}:amd64", amd64),
                    (f"{host}/{repo}:arm64", platform_of("arm64", "v8")),
                ],
            ),
            client=FAST,
        )
        _, first_digest = list_of(open_registry, repo, "latest")

        # The first entry again, unchanged: same list, no PUT (it used to move to the end).
        proxy.reset()
        [same] = pushmanifest.push(
            spec_for(f"{host}/{repo}:latest", [(f"{host}/{repo}:amd64", amd64)]),
            client=FAST,
            append=True,
        )
        assert manifest_puts(proxy, repo, "latest") == 0
        assert same.written == ()
        assert same.digest == first_digest
        data, digest = list_of(open_registry, repo, "latest")
        assert digest == first_digest
        assert [e["digest"] for e in data["manifests"]] == [amd.digest, arm.digest]

        # A rebuild of the first platform: replaced where it stands, one PUT.
        proxy.reset()
        [rebuilt] = pushmanifest.push(
            spec_for(f"{host}/{repo}:latest", [(f"{host}/{repo}:amd64-rebuilt", amd64)]),
            client=FAST,
            append=True,
        )
        assert manifest_puts(proxy, repo, "latest") == 1
        data, digest = list_of(open_registry, repo, "latest")
        assert digest == rebuilt.digest
        assert [e["digest"] for e in data["manifests"]] == [amd2.digest, arm.digest]

        # A new platform goes at the end; the others keep their places.
        proxy.reset()
        pushmanifest.push(
            spec_for(
                f"{host}/{repo}:latest", [(f"{host}/{repo}:riscv64", platform_of("riscv64", ""))]
            ),
            client=FAST,
            append=True,
        )
        assert manifest_puts(proxy, repo, "latest") == 1
        data, _ = list_of(open_registry, repo, "latest")
        assert [e["digest"] for e in data["manifests"]] == [amd2.digest, arm.digest, riscv.digest]


def test_append_keeps_an_oci_index_and_its_annotations(open_registry: Any) -> None:
    """Merging must not change what it does not touch: the list type and its annotations."""
    repo = "append/oci-kept"
    seed_image(open_registry, repo, "amd64", architecture="amd64")
    seed_image(open_registry, repo, "arm64", architecture="arm64")
    host = open_registry.host
    amd64, arm64 = platform_of("amd64", ""), platform_of("arm64", "")
    first = ManifestListSpec(
        image=f"{host}/{repo}:latest",
        annotations={"org.example.kept": "yes"},
        manifests=[
            {"image": f"{host}/{repo}:amd64", "platform": amd64},
            {"image": f"{host}/{repo}:arm64", "platform": arm64},
        ],
    )
    [pushed] = pushmanifest.push(first, client=FAST, list_type="oci")
    [again] = pushmanifest.push(
        spec_for(f"{host}/{repo}:latest", [(f"{host}/{repo}:arm64", arm64)]),
        client=FAST,
        append=True,
    )
    assert again.digest == pushed.digest
    assert again.written == ()


# -- --force (point 7) ----------------------------------------------------------------------------


def test_force_writes_a_list_the_tags_already_hold(open_registry: Any, tmp_path: Path) -> None:
    repo = "force/same-digest"
    seed_image(open_registry, repo, "amd64", architecture="amd64")
    with HttpProxy(upstream=open_registry.host) as proxy:
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            f"image: {proxy.host}/{repo}:1.0\ntags: [latest]\nmanifests:\n"
            f"  - image: {proxy.host}/{repo}:amd64\n"
            "    platform: {os: linux, architecture: amd64}\n"
        )
        first = run_cli("from-spec", str(spec), "--plain-http", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert proxy.count("PUT", "/manifests/") == 2

        proxy.reset()
        unchanged = run_cli("from-spec", str(spec), "--plain-http", cwd=tmp_path)
        assert unchanged.returncode == 0, unchanged.stderr
        assert proxy.count("PUT", "/manifests/") == 0

        proxy.reset()
        forced = run_cli("from-spec", str(spec), "--plain-http", "--force", cwd=tmp_path)
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout == first.stdout  # same Digest: line
        assert manifest_puts(proxy, repo, "1.0") == 1
        assert manifest_puts(proxy, repo, "latest") == 1

        # The library option, with --append too.
        proxy.reset()
        [result] = pushmanifest.push(
            pushmanifest.load_spec_file(spec), client=FAST, force=True, append=True
        )
        assert result.written == ("1.0", "latest")
        assert proxy.count("PUT", "/manifests/") == 2


# -- --wait (point 8) -----------------------------------------------------------------------------


def test_wait_polls_a_missing_source_with_heads_until_it_appears(open_registry: Any) -> None:
    repo = "wait/late"
    seed_image(open_registry, repo, "amd64", architecture="amd64")
    seeded: list[SeededImage] = []
    with HttpProxy(upstream=open_registry.host) as proxy:
        host = proxy.host

        def push_late() -> None:
            # Pushed once our run has looked for it at least twice (a real lagging build).
            deadline = time.monotonic() + 60
            while proxy.count("HEAD", f"/v2/{repo}/manifests/arm64") < 2:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)
            seeded.append(seed_image(open_registry, repo, "arm64", architecture="arm64"))

        late = threading.Thread(target=push_late)
        late.start()
        try:
            [result] = pushmanifest.push(
                spec_for(
                    f"{host}/{repo}:latest",
                    [
                        (f"{host}/{repo}:amd64", platform_of("amd64", "")),
                        (f"{host}/{repo}:arm64", platform_of("arm64", "")),
                    ],
                ),
                client=FAST,
                wait=120,
            )
        finally:
            late.join()
        assert seeded, "the late source was never pushed"
        heads = proxy.count("HEAD", f"/v2/{repo}/manifests/arm64")
        assert heads >= 3  # two polls before it existed, one that found it
        # One GET confirms the first missing source (a HEAD-404-but-GET-works registry would be
        # found out); the polling itself is HEAD only (GETs count as pulls).
        assert proxy.count("GET") == 1
        assert proxy.count("GET", f"/v2/{repo}/manifests/arm64") == 1
        assert proxy.count("HEAD", f"/v2/{repo}/manifests/amd64") == 1  # present: not polled
    data, digest = list_of(open_registry, repo, "latest")
    assert digest == result.digest
    assert [e["digest"] for e in data["manifests"]][1] == seeded[0].digest


def test_wait_runs_out_then_fails_or_skips_as_without(open_registry: Any, tmp_path: Path) -> None:
    repo = "wait/never"
    seed_image(open_registry, repo, "amd64", architecture="amd64")
    with HttpProxy(upstream=open_registry.host) as proxy:
        host = proxy.host
        spec = spec_for(
            f"{host}/{repo}:latest",
            [
                (f"{host}/{repo}:amd64", platform_of("amd64", "")),
                (f"{host}/{repo}:never", platform_of("arm64", "")),
            ],
        )
        with pytest.raises(pushmanifest.MissingSourcesError, match="never"):
            pushmanifest.push(spec, client=FAST, wait=1.5)
        assert proxy.count("HEAD", f"/v2/{repo}/manifests/never") >= 2
        assert proxy.count("GET") == 1  # the one confirming GET; polling is HEAD only
        assert proxy.count("PUT") == 0

        proxy.reset()
        [result] = pushmanifest.push(spec, client=FAST, wait=0.5, ignore_missing=True)
        assert [str(e.image) for e in result.entries] == [f"{host}/{repo}:amd64"]

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        f"image: {host}/{repo}:latest\nmanifests:\n  - image: {host}/{repo}:amd64\n"
    )
    bad = run_cli("from-spec", str(spec_file), "--wait", "-1", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--wait" in bad.stderr and "Traceback" not in bad.stderr


# -- concurrency (point 4) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ten_sources(open_registry: Any) -> dict[str, SeededImage]:
    return {
        tag: seed_image(open_registry, "append/race", tag, architecture=arch, variant=variant)
        for tag, arch, variant in TEN_PLATFORMS
    }


TRIALS = 20


def test_ten_concurrent_appenders_keep_all_ten_entries(
    open_registry: Any, ten_sources: dict[str, SeededImage], caplog: pytest.LogCaptureFixture
) -> None:
    """10 runs of --append started at once, each adding one platform to the same tag, 20 times:
    every run succeeds and every trial ends with all 10 entries.

    The runs are concurrent library calls in one event loop (each its own run, connections and
    reads), straight to the registry; writes are counted from each run's "pushed" log line.
    """
    repo = "append/race"
    host = open_registry.host
    figures: list[tuple[int, int, int]] = []  # (PUTs, runs that rewrote, most writes by a run)

    async def trial(tag: str) -> list[Any]:
        specs = [
            spec_for(
                f"{host}/{repo}:{tag}",
                [(f"{host}/{repo}:{source}", platform_of(arch, variant))],
            )
            for source, arch, variant in TEN_PLATFORMS
        ]
        return await asyncio.gather(
            *(pushmanifest.push_async(s, client=FAST, append=True) for s in specs),
            return_exceptions=True,
        )

    for number in range(TRIALS):
        tag = f"trial-{number}"
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="pushmanifest"):
            outcomes = asyncio.run(trial(tag))
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert not failures, failures
        data, _ = list_of(open_registry, repo, tag)
        held = sorted(e["digest"] for e in data["manifests"])
        assert held == sorted(s.digest for s in ten_sources.values()), f"trial {number}"
        messages = [r.getMessage() for r in caplog.records]
        puts = sum(m.startswith("pushed ") and m.endswith(f"/{repo}:{tag}") for m in messages)
        rewrote = len(  # each run adds one entry: its name tells the runs apart
            {m.split(" dropped ")[1].split(";")[0] for m in messages if "merging again" in m}
        )
        writes = [
            int(m.rsplit(" after ", 1)[1].split()[0])
            for m in messages
            if "holds our entries after" in m
        ]
        assert puts >= 10
        figures.append((puts, rewrote, max(writes, default=1)))
    puts = [f[0] for f in figures]
    print(
        f"\n--append race: {TRIALS} trials x 10 appenders, all 10 entries kept in every trial; "
        f"PUTs per trial min {min(puts)} max {max(puts)} total {sum(puts)} "
        f"(10 without rewrites); trials with a rewrite: {sum(1 for f in figures if f[1])}; "
        f"runs that rewrote: {sum(f[1] for f in figures)} of {10 * TRIALS}; "
        f"most writes by one run: {max(f[2] for f in figures)} (bound "
        f"{pusher_module.APPEND_ROUNDS})"
    )


def test_append_merges_a_write_made_after_its_read(
    open_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that wrote between our read and our write is merged (the re-read before writing):
    one PUT by us, nothing lost."""
    repo = "append/reread"
    amd = seed_image(open_registry, repo, "amd64", architecture="amd64")
    arm = seed_image(open_registry, repo, "arm64", architecture="arm64")
    riscv = seed_image(open_registry, repo, "riscv64", architecture="riscv64")
    put_list(open_registry, repo, "latest", [amd])
    real_copy = pusher_module._Run._copy_entries

    async def copy_then_concurrent_write(self: Any, target: Any, entries: Any) -> None:
        await real_copy(self, target, entries)
        await asyncio.to_thread(put_list, open_registry, repo, "latest", [amd, riscv])

    monkeypatch.setattr(pusher_module._Run, "_copy_entries", copy_then_concurrent_write)
    with HttpProxy(upstream=open_registry.host) as proxy:
        host = proxy.host
        pushmanifest.push(
            spec_for(f"{host}/{repo}:latest", [(f"{host}/{repo}:arm64", platform_of("arm64", ""))]),
            client=FAST,
            append=True,
        )
        assert manifest_puts(proxy, repo, "latest") == 1
    data, _ = list_of(open_registry, repo, "latest")
    assert [e["digest"] for e in data["manifests"]] == [amd.digest, riscv.digest, arm.digest]


def test_append_rewrites_when_overwritten_and_gives_up_naming_the_lost_entry(
    open_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent run that read before our write writes after it: we merge again and rewrite.
    One that does so every time: exit 1 (a RegistryError) naming our entry, after a bounded
    number of writes."""
    repo = "append/overwritten"
    amd = seed_image(open_registry, repo, "amd64", architecture="amd64")
    seed_image(open_registry, repo, "arm64", architecture="arm64")
    put_list(open_registry, repo, "latest", [amd])
    real_put = pusher_module._Run._put
    stale_writes = {"left": 1}

    async def put_then_stale_overwrite(self: Any, ref: Any, manifest_list: Any) -> str:
        digest = await real_put(self, ref, manifest_list)
        if stale_writes["left"] > 0:
            stale_writes["left"] -= 1
            await asyncio.to_thread(put_list, open_registry, repo, "latest", [amd])
        return digest

    monkeypatch.setattr(pusher_module._Run, "_put", put_then_stale_overwrite)
    spec_args = (f"{open_registry.host}/{repo}:arm64", platform_of("arm64", ""))
    target = f"{open_registry.host}/{repo}:latest"
    with HttpProxy(upstream=open_registry.host) as proxy:
        spec = spec_for(
            target.replace(open_registry.host, proxy.host),
            [(spec_args[0].replace(open_registry.host, proxy.host), spec_args[1])],
        )
        pushmanifest.push(spec, client=FAST, append=True)
        assert manifest_puts(proxy, repo, "latest") == 2  # overwritten once: written again
        data, _ = list_of(open_registry, repo, "latest")
        assert len(data["manifests"]) == 2

        put_list(open_registry, repo, "latest", [amd])
        stale_writes["left"] = 1000
        monkeypatch.setattr(pusher_module, "APPEND_ROUNDS", 3)
        proxy.reset()
        with pytest.raises(pushmanifest.RegistryError, match=r"arm64 \(linux/arm64\)") as caught:
            pushmanifest.push(spec, client=FAST, append=True)
        assert "overwritten by concurrent pushes 3 times" in str(caught.value)
        assert manifest_puts(proxy, repo, "latest") == 3
        # The run did write (and was overwritten): partial success names the list it wrote.
        partial = pusher_module.partial_push(caught.value)
        assert partial is not None
        [wrote] = partial.written
        assert wrote.written == ("latest",)
        assert [str(e.platform) for e in wrote.entries] == ["linux/amd64", "linux/arm64"]


def test_append_leaves_a_concurrent_newer_build_of_its_platform(
    open_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs pushing the same platform at once: the later write stays, no ping-pong."""
    repo = "append/same-platform"
    amd = seed_image(open_registry, repo, "amd64", architecture="amd64")
    arm = seed_image(open_registry, repo, "arm64", architecture="arm64")
    arm_other = seed_image(open_registry, repo, "arm64-other", architecture="arm64")
    put_list(open_registry, repo, "latest", [amd])
    real_put = pusher_module._Run._put
    once: list[Optional[str]] = [None]

    async def put_then_other_build(self: Any, ref: Any, manifest_list: Any) -> str:
        digest = await real_put(self, ref, manifest_list)
        if once[0] is None:
            once[0] = await asyncio.to_thread(
                put_list, open_registry, repo, "latest", [amd, arm_other]
            )
        return digest

    monkeypatch.setattr(pusher_module._Run, "_put", put_then_other_build)
    with HttpProxy(upstream=open_registry.host) as proxy:
        host = proxy.host
        pushmanifest.push(
            spec_for(f"{host}/{repo}:latest", [(f"{host}/{repo}:arm64", platform_of("arm64", ""))]),
            client=FAST,
            append=True,
        )
        assert manifest_puts(proxy, repo, "latest") == 1
    data, _ = list_of(open_registry, repo, "latest")
    assert [e["digest"] for e in data["manifests"]] == [amd.digest, arm_other.digest]
    assert arm.digest not in {e["digest"] for e in data["manifests"]}


def test_append_drops_an_entry_whose_image_was_deleted(open_registry: Any) -> None:
    """A kept entry whose image is gone from the repository would make every later --append fail
    (the registry refuses the list): it is dropped, with a warning, and the list written."""
    repo = "append/deleted"
    amd = seed_image(open_registry, repo, "amd64", architecture="amd64")
    arm = seed_image(open_registry, repo, "arm64", architecture="arm64")
    riscv = seed_image(open_registry, repo, "riscv64", architecture="riscv64")
    put_list(open_registry, repo, "latest", [amd, arm])
    delete_manifest(open_registry, repo, arm.digest)
    with HttpProxy(upstream=open_registry.host) as proxy:
        host = proxy.host
        [result] = pushmanifest.push(
            spec_for(
                f"{host}/{repo}:latest", [(f"{host}/{repo}:riscv64", platform_of("riscv64", ""))]
            ),
            client=FAST,
            append=True,
        )
        # Refused (as many times as a registry that has not settled yet gets), then written
        # without the gone entry.
        assert manifest_puts(proxy, repo, "latest") == FAST.retries + 1
    data, digest = list_of(open_registry, repo, "latest")
    assert digest == result.digest
    assert [e["digest"] for e in data["manifests"]] == [amd.digest, riscv.digest]
