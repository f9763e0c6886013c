"""The GitHub Action (action/): its scripts, run as a runner runs them, against real registries.

The runner is simulated as far as the scripts can see it: a copy of the repository as the
action's checkout ($GITHUB_ACTION_PATH), $RUNNER_TEMP, $GITHUB_OUTPUT and $GITHUB_STEP_SUMMARY
files, and each step's environment built from action.yml's own ``env:`` mapping, with the
inputs' defaults from action.yml where a test gives none. install.sh really creates the virtual
environment and pip-installs the checkout into it (dependencies from PyPI); run.sh runs with the
python it reports.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import pytest
import yaml

from support.images import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    list_tags,
    make_spec_images,
    read_manifest,
    seed_image,
)
from support.registry import RegistryServer

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action"
_NOT_COPIED = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", ".venv"
)
_EXPRESSION = re.compile(r"\$\{\{\s*([a-z]+)\.([A-Za-z0-9_.-]+)\s*\}\}")


def action_yml() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ACTION / "action.yml").read_text())
    return data


def parse_github_output(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it: NAME=VALUE lines and NAME<<DELIMITER blocks."""
    outputs: dict[str, str] = {}
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value: list[str] = []
            while lines[index] != delimiter:
                value.append(lines[index])
                index += 1
            index += 1
            outputs[name] = "\n".join(value)
        else:
            name, _, single = line.partition("=")
            outputs[name] = single
    return outputs


@dataclass
class StepResult:
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str


@dataclass
class Runner:
    """One simulated runner: the action's checkout and the steps' environment."""

    action_path: Path
    temp: Path
    docker_config: Path
    python: str = ""

    def step_env(
        self, step_id: str, inputs: dict[str, str], outputs: dict[str, str]
    ) -> dict[str, str]:
        """The step's environment: its ``env:`` with ${{ inputs.* }} and ${{ steps.* }} filled."""
        spec = action_yml()
        defaults = {name: str(i.get("default", "")) for name, i in spec["inputs"].items()}
        unknown = set(inputs) - set(defaults)
        assert not unknown, f"not inputs of action.yml: {unknown}"
        values = {**defaults, **inputs}
        (step,) = [s for s in spec["runs"]["steps"] if s["id"] == step_id]

        def fill(match: re.Match[str]) -> str:
            context, name = match.groups()
            if context == "inputs":
                return values[name]
            assert context == "steps", match.group(0)
            _, output = name.split(".outputs.")
            return outputs[output]

        env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
        env.pop("PYTHONPATH", None)  # the action runs what it installed, nothing else
        env.update({k: _EXPRESSION.sub(fill, str(v)) for k, v in step.get("env", {}).items()})
        env["DOCKER_CONFIG"] = str(self.docker_config)
        return env

    def run_step(
        self,
        step_id: str,
        inputs: Optional[dict[str, str]] = None,
        *,
        outputs: Optional[dict[str, str]] = None,
        extra_env: Optional[dict[str, str]] = None,
        timeout: float = 300,
    ) -> StepResult:
        spec = action_yml()
        (step,) = [s for s in spec["runs"]["steps"] if s["id"] == step_id]
        run_id = uuid.uuid4().hex[:8]
        output_file = self.temp / f"output-{run_id}"
        summary_file = self.temp / f"summary-{run_id}"
        output_file.touch()
        env = self.step_env(step_id, inputs or {}, outputs or {})
        env.update(
            GITHUB_ACTION_PATH=str(self.action_path),
            RUNNER_TEMP=str(self.temp),
            GITHUB_OUTPUT=str(output_file),
            GITHUB_STEP_SUMMARY=str(summary_file),
            **(extra_env or {}),
        )
        assert step["shell"] == "bash"
        result = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            env=env,
            cwd=self.temp,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return StepResult(
            result.returncode,
            result.stdout,
            result.stderr,
            parse_github_output(output_file.read_text()),
            summary_file.read_text() if summary_file.exists() else "",
        )

    def run(self, extra_env: Optional[dict[str, str]] = None, **inputs: str) -> StepResult:
        """The run step (run.sh), with the python the install step gave."""
        named = {name.replace("_", "-"): value for name, value in inputs.items()}
        return self.run_step("run", named, outputs={"python": self.python}, extra_env=extra_env)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    """A runner on which the install step has run (once for the module: it pip-installs)."""
    base = tmp_path_factory.mktemp("runner")
    checkout = base / "actions" / "pushmanifest"
    shutil.copytree(ROOT, checkout, ignore=_NOT_COPIED)
    temp = base / "runner-temp"
    temp.mkdir()
    docker_config = base / "docker-config"  # no host credentials
    docker_config.mkdir()
    runner = Runner(action_path=checkout / "action", temp=temp, docker_config=docker_config)
    installed = runner.run_step("install", {"python": sys.executable}, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    runner.python = installed.outputs["python"]
    assert runner.python.startswith(str(temp / "pushmanifest-venv"))
    return runner


def _run_py() -> ModuleType:
    """action/run.py as a module, for its pure functions (imports pushmanifest from src)."""
    spec = importlib.util.spec_from_file_location("action_run", ACTION / "run.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules.get("action_run")
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["action_run"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------
# action.yml and the scripts agree


def test_action_is_composite_and_runs_its_scripts() -> None:
    spec = action_yml()
    assert spec["runs"]["using"] == "composite"
    steps = spec["runs"]["steps"]
    assert [s["id"] for s in steps] == ["install", "run"]
    for step, script in zip(steps, ("install.sh", "run.sh")):
        assert step["run"] == f'"$GITHUB_ACTION_PATH/{script}"'
        assert os.access(ACTION / script, os.X_OK), f"{script} is not executable"
    assert set(spec["outputs"]) == {"digest", "json", "metadata"}
    for name, output in spec["outputs"].items():
        assert output["value"] == f"${{{{ steps.run.outputs.{name} }}}}"


def test_every_input_reaches_a_script_and_every_variable_read_is_mapped() -> None:
    spec = action_yml()
    mapped: dict[str, str] = {}
    for step in spec["runs"]["steps"]:
        for variable, value in step.get("env", {}).items():
            match = _EXPRESSION.fullmatch(str(value))
            assert match is not None, value
            mapped[variable] = match.group(2)
    used_inputs = {v for v in mapped.values() if not v.startswith("install.")}
    assert used_inputs == set(spec["inputs"])
    scripts = "".join((ACTION / name).read_text() for name in ("install.sh", "run.sh", "run.py"))
    read = set(re.findall(r"INPUT_[A-Z_]{2,}", scripts)) | {
        f"INPUT_{n}" for n in re.findall(r'(?<![.\w])get\("([A-Z_]+)"\)', scripts)
    }
    assert read <= set(mapped), read - set(mapped)
    for variable, name in mapped.items():
        if variable.startswith("INPUT_"):
            assert variable == "INPUT_" + name.upper().replace("-", "_")


# --------------------------------------------------------------------------------------------
# run.py's parts


def test_outputs_are_written_in_the_multi_line_form(tmp_path: Path) -> None:
    run_py = _run_py()
    path = tmp_path / "output"
    path.write_text("before=1\n")
    value = 'line one\nghadelimiter_x\n{"json": true}\n'
    run_py.write_outputs(str(path), {"json": value, "digest": "sha256:" + "a" * 64})
    assert parse_github_output(path.read_text()) == {
        "before": "1",
        "json": value,
        "digest": "sha256:" + "a" * 64,
    }


def test_annotations_of_metadata_action() -> None:
    run_py = _run_py()
    found = run_py.parse_annotations(
        "index:org.opencontainers.image.title=demo\n"
        "org.example.plain=a=b:c\n"
        "\n"
        "manifest-descriptor:org.example.entry=e\n"
        "manifest:org.opencontainers.image.description=for the images\n"
        "index-descriptor:org.example.up=x\n"
    )
    assert found.on_list == {"org.opencontainers.image.title": "demo", "org.example.plain": "a=b:c"}
    assert found.on_entries == {"org.example.entry": "e"}
    assert found.skipped == [
        "manifest:org.opencontainers.image.description",
        "index-descriptor:org.example.up",
    ]
    for bad in ("no-equals", "=value", "manifest-descriptor[linux/amd64]:k=v"):
        with pytest.raises(run_py.InputProblem):
            run_py.parse_annotations(bad)


def test_sources_digests_belong_to_the_first_tag() -> None:
    run_py = _run_py()
    (home,) = run_py.parse_tags("r.example:5000/team/app")
    assert str(home) == "r.example:5000/team/app:latest"
    hex_digest = "0123456789abcdef" * 4
    assert run_py.parse_sources(
        f"sha256:{hex_digest}\n {hex_digest}, other/img:1\nr.example:5000/team/app:amd64",
        home,
    ) == [
        f"r.example:5000/team/app@sha256:{hex_digest}",
        "docker.io/other/img:1",
        "r.example:5000/team/app:amd64",
    ]


def test_password_goes_on_stdin_never_in_argv(tmp_path: Path) -> None:
    run_py = _run_py()
    planned = run_py.plan(
        {
            "INPUT_TAGS": "r.example/a:1",
            "INPUT_SOURCES": "r.example/a:amd64",
            "INPUT_USERNAME": "alice",
            "INPUT_PASSWORD": "s3cret-value",
            "INPUT_ARGS": "--max-concurrency 4 --ca-file 'my ca.pem'",
            "RUNNER_TEMP": str(tmp_path),
        }
    )
    assert planned.stdin == "s3cret-value\n"
    assert not [a for a in planned.argv if "s3cret" in a]
    assert planned.argv[-7:] == [
        "--username",
        "alice",
        "--password-stdin",
        "--max-concurrency",
        "4",
        "--ca-file",
        "my ca.pem",
    ]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "give spec, or tags"),
        ({"INPUT_TAGS": "r.example/a:1"}, "sources: give"),
        ({"INPUT_SPEC": "a.yaml", "INPUT_TAGS": "r.example/a:1"}, "not both"),
        ({"INPUT_TAGS": "r.example/a@sha256:" + "0" * 64}, "digest reference"),
        ({"INPUT_TAGS": "r.example/A:1"}, "tags: "),
        ({"INPUT_TAGS": "r.example/a:1", "INPUT_SOURCES": "b:bad tag!"}, "sources: "),
        ({"INPUT_SPEC": "a.yaml", "INPUT_APPEND": "maybe"}, "append: 'maybe'"),
        ({"INPUT_SPEC": "a.yaml", "INPUT_TYPE": "zip"}, "type: 'zip'"),
        ({"INPUT_SPEC": "a.yaml", "INPUT_USERNAME": "alice"}, "go together"),
        ({"INPUT_SPEC": "a.yaml", "INPUT_ARGS": "--ca-file 'x"}, "args: "),
        ({"INPUT_SPEC": "a.yaml", "INPUT_ANNOTATIONS": "manifest-descriptor:a=b"}, "entries"),
    ],
)
def test_inputs_that_do_not_fit(inputs: dict[str, str], message: str, tmp_path: Path) -> None:
    run_py = _run_py()
    with pytest.raises(run_py.InputProblem, match=re.escape(message)):
        run_py.plan({**inputs, "RUNNER_TEMP": str(tmp_path)})


# --------------------------------------------------------------------------------------------
# The steps on a simulated runner, against real registries


def _repo(prefix: str) -> str:
    return f"action/{prefix}-{uuid.uuid4().hex[:8]}"


def _platforms(data: bytes) -> list[str]:
    return sorted(
        "/".join(
            filter(
                None,
                (
                    m["platform"]["os"],
                    m["platform"]["architecture"],
                    m["platform"].get("variant", ""),
                ),
            )
        )
        for m in json.loads(data)["manifests"]
    )


def test_bad_inputs_exit_2_with_an_error_annotation(runner: Runner) -> None:
    result = runner.run(tags="127.0.0.1:1/a:1")
    assert result.returncode == 2
    assert result.stdout.startswith("::error title=pushmanifest::sources: give")
    assert result.outputs == {}


def test_metadata_action_tags_and_digests(runner: Runner, open_registry: RegistryServer) -> None:
    host = open_registry.host
    repo = _repo("app")
    images = make_spec_images(
        open_registry, repo, {"amd64": "linux/amd64", "arm32v7": "linux/arm/v7"}
    )
    elsewhere = _repo("build")  # another repository: the image is mounted into the target's
    arm64 = seed_image(open_registry, elsewhere, "arm64", architecture="arm64")
    result = runner.run(
        tags=f"{host}/{repo}:1.0\n{host}/{repo}:latest\n",  # metadata-action: one per line
        sources=f"{images['amd64'].digest}\n{images['arm32v7'].digest.removeprefix('sha256:')}\n"
        f"{host}/{elsewhere}:arm64",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data, media_type, digest = read_manifest(open_registry, repo, "1.0")
    assert media_type == DOCKER_MANIFEST_LIST
    assert result.outputs["digest"] == digest
    assert read_manifest(open_registry, repo, "latest")[2] == digest
    assert _platforms(data) == ["linux/amd64", "linux/arm/v7", "linux/arm64"]
    assert {m["digest"] for m in json.loads(data)["manifests"]} == {
        images["amd64"].digest,
        images["arm32v7"].digest,
        arm64.digest,
    }
    (listed,) = json.loads(result.outputs["json"])
    assert listed["digest"] == digest
    assert listed["target"] == f"{host}/{repo}:1.0"
    assert listed["tags"] == ["1.0", "latest"]
    # build-push-action's output "metadata": the --metadata-file document, its file removed.
    metadata = json.loads(result.outputs["metadata"])
    assert metadata["containerimage.digest"] == digest
    assert metadata["image.name"] == f"{host}/{repo}:1.0,{host}/{repo}:latest"
    assert metadata["lists"][0]["image"] == f"{host}/{repo}@{digest}"
    assert not list(runner.temp.glob("pushmanifest-*-metadata.json*"))
    assert f"Digest: {digest}" in result.stdout
    assert digest in result.summary


def test_annotations_make_an_oci_index(runner: Runner, open_registry: RegistryServer) -> None:
    host = open_registry.host
    repo = _repo("annotated")
    images = make_spec_images(open_registry, repo, {"amd64": "linux/amd64", "arm64": "linux/arm64"})
    result = runner.run(
        tags=f"{host}/{repo}:2.0",
        sources=" ".join(i.digest for i in images.values()),
        annotations="index:org.opencontainers.image.title=demo\n"
        "org.opencontainers.image.source=https://example.com/a=b\n"
        "manifest-descriptor:org.example.entry=yes\n"
        "manifest:org.opencontainers.image.description=the images'\n",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data, media_type, digest = read_manifest(open_registry, repo, "2.0")
    assert media_type == OCI_INDEX
    index = json.loads(data)
    assert index["annotations"] == {
        "org.opencontainers.image.title": "demo",
        "org.opencontainers.image.source": "https://example.com/a=b",
    }
    assert [m["annotations"] for m in index["manifests"]] == [{"org.example.entry": "yes"}] * 2
    assert result.outputs["digest"] == digest
    assert "::notice title=pushmanifest::annotations given: pushing an OCI image index" in (
        result.stdout
    )
    assert "::warning title=pushmanifest::annotation 'manifest:org.opencontainers.image" in (
        result.stdout
    )


def test_dry_run_writes_nothing_and_gives_the_digest(
    runner: Runner, open_registry: RegistryServer
) -> None:
    host = open_registry.host
    repo = _repo("dry")
    images = make_spec_images(open_registry, repo, {"amd64": "linux/amd64", "arm64": "linux/arm64"})
    inputs = {"tags": f"{host}/{repo}:3.0", "sources": "\n".join(i.digest for i in images.values())}
    dry = runner.run(dry_run="true", **inputs)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "3.0" not in list_tags(open_registry, repo)
    (listed,) = json.loads(dry.outputs["json"])
    assert listed["dryRun"] is True and listed["written"] == []
    assert "dry run" in dry.summary
    real = runner.run(**inputs)
    assert real.returncode == 0, real.stdout + real.stderr
    assert (
        real.outputs["digest"]
        == dry.outputs["digest"]
        == read_manifest(open_registry, repo, "3.0")[2]
    )


def test_append_adds_a_platform(runner: Runner, open_registry: RegistryServer) -> None:
    host = open_registry.host
    repo = _repo("append")
    images = make_spec_images(open_registry, repo, {"amd64": "linux/amd64", "arm64": "linux/arm64"})
    first = runner.run(tags=f"{host}/{repo}:4.0", sources=images["amd64"].digest)
    assert first.returncode == 0, first.stdout + first.stderr
    second = runner.run(
        tags=f"{host}/{repo}:4.0", sources=images["arm64"].digest, append="true", type="docker"
    )
    assert second.returncode == 0, second.stdout + second.stderr
    data, _, digest = read_manifest(open_registry, repo, "4.0")
    assert _platforms(data) == ["linux/amd64", "linux/arm64"]
    assert second.outputs["digest"] == digest != first.outputs["digest"]


def test_tags_in_two_repositories_get_the_same_list(
    runner: Runner, open_registry: RegistryServer
) -> None:
    host = open_registry.host
    repo, mirror = _repo("main"), _repo("mirror")
    images = make_spec_images(open_registry, repo, {"amd64": "linux/amd64"})
    result = runner.run(
        tags=f"{host}/{repo}:5.0,{host}/{mirror}:5.0,{host}/{repo}:5",
        sources=images["amd64"].digest,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    digest = result.outputs["digest"]
    assert read_manifest(open_registry, repo, "5")[2] == digest
    assert read_manifest(open_registry, mirror, "5.0")[2] == digest
    assert [r["target"] for r in json.loads(result.outputs["json"])] == [
        f"{host}/{repo}:5.0",
        f"{host}/{mirror}:5.0",
    ]


def test_spec_input(runner: Runner, open_registry: RegistryServer) -> None:
    repo = _repo("spec")
    make_spec_images(open_registry, repo, {"amd64": "linux/amd64", "arm32v7": "linux/arm/v7"})
    spec = runner.temp / f"{uuid.uuid4().hex}.yaml"
    spec.write_text(
        f"image: ${{REGISTRY}}/{repo}:6.0\n"
        "manifests:\n"
        f"  - image: ${{REGISTRY}}/{repo}:amd64\n"
        "    platform: {os: linux, architecture: amd64}\n"
        f"  - image: ${{REGISTRY}}/{repo}:arm32v7\n"
        "    platform: {os: linux, architecture: arm, variant: v7}\n"
    )
    result = runner.run(
        extra_env={"REGISTRY": open_registry.host},
        spec=str(spec),
        annotations="org.example.k=v",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data, media_type, digest = read_manifest(open_registry, repo, "6.0")
    assert (media_type, result.outputs["digest"]) == (OCI_INDEX, digest)
    assert json.loads(data)["annotations"] == {"org.example.k": "v"}


def test_a_missing_source_fails_and_sets_no_output(
    runner: Runner, open_registry: RegistryServer
) -> None:
    host = open_registry.host
    repo = _repo("missing")
    make_spec_images(open_registry, repo, {"amd64": "linux/amd64"})
    result = runner.run(
        tags=f"{host}/{repo}:7.0", sources=f"{host}/{repo}:amd64 sha256:" + "1" * 64
    )
    assert result.returncode in (1, 2)
    assert result.outputs == {}
    assert not list(runner.temp.glob("pushmanifest-*-metadata.json*"))  # removed all the same
    assert "sha256:" + "1" * 64 in result.stderr
    assert "7.0" not in list_tags(open_registry, repo)


def test_credentials_from_inputs(runner: Runner, token_registry: RegistryServer) -> None:
    host = token_registry.host
    repo = f"alice/action-{uuid.uuid4().hex[:8]}"
    password = token_registry.users["alice"]
    images = make_spec_images(
        token_registry, repo, {"amd64": "linux/amd64"}, username="alice", password=password
    )
    denied = runner.run(tags=f"{host}/{repo}:8.0", sources=images["amd64"].digest)
    assert denied.returncode == 1, denied.stdout + denied.stderr
    result = runner.run(
        tags=f"{host}/{repo}:8.0",
        sources=images["amd64"].digest,
        username="alice",
        password=password,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert password not in result.stdout + result.stderr
    assert (
        read_manifest(token_registry, repo, "8.0", username="alice", password=password)[2]
        == result.outputs["digest"]
    )
