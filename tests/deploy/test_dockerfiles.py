"""The one Dockerfile (deploy/docker/Dockerfile, the service a build argument) is valid against the
workspace for every service (no Docker engine needed): what it copies exists and reaches the
build context, what it starts exists, it follows the image rules, and its builder stage, replayed
with uv from the lock file, installs a working service and nothing else."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.support import (
    DEV_ONLY,
    DOCKERFILE,
    ROOT,
    SERVICES,
    Instruction,
    build_instructions,
    dockerignore_patterns,
    env_of,
    exec_form,
    ignored_by_docker,
    locked_dependencies,
    module_exists,
    read_dockerfile,
    substitute,
    workspace_members,
)

pytestmark = pytest.mark.unit


def _dockerfile(service: str) -> list[Instruction]:
    """The Dockerfile as ``docker build --build-arg SERVICE=<service>`` reads it."""
    return build_instructions(DOCKERFILE, {"SERVICE": service})


def test_one_dockerfile_for_every_service() -> None:
    """No per-service copies; each stage declares the build argument, without a default."""
    assert not list(ROOT.glob("services/*/Dockerfile"))
    instructions = read_dockerfile(DOCKERFILE)
    stages = {i.stage for i in instructions if i.keyword == "FROM"}
    declared = {i.stage for i in instructions if i.keyword == "ARG" and i.args == "SERVICE"}
    assert declared == stages


def _guard_script() -> str:
    """The builder's check of the build argument, as its shell runs it (the variable unexpanded)."""
    (guard,) = [i for i in read_dockerfile(DOCKERFILE)
                if i.keyword == "RUN" and i.args.startswith("test ")]
    return guard.args


def test_a_build_without_a_known_service_stops_at_once(tmp_path: Path) -> None:
    (tmp_path / "services" / "intake").mkdir(parents=True)
    (tmp_path / "services" / "intake" / "pyproject.toml").write_text("", encoding="utf-8")

    def run(service: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", "-c", _guard_script()], cwd=tmp_path, capture_output=True,
                              text=True, timeout=30,
                              env={"PATH": os.environ.get("PATH", ""), "SERVICE": service})

    assert run("intake").returncode == 0
    for wrong in ("", "nosuch"):
        done = run(wrong)
        assert done.returncode != 0 and "--build-arg SERVICE=" in done.stderr, wrong


@pytest.mark.parametrize("service", SERVICES)
def test_copy_sources_exist_and_reach_the_build_context(service: str) -> None:
    patterns = dockerignore_patterns()
    copies = [i for i in _dockerfile(service) if i.keyword in {"COPY", "ADD"} and "from" not in i.flags]
    assert copies
    for instruction in copies:
        *sources, _destination = instruction.args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path"
            assert not ignored_by_docker(source, patterns), f"COPY {source}: excluded by .dockerignore"
    every_member = {f"{member}/pyproject.toml" for member in workspace_members()}
    assert {"shared/pyproject.toml", "devtools/pyproject.toml"} <= every_member
    copied = {s for i in copies for s in i.args.split()[:-1]}
    assert every_member <= copied, "uv needs every workspace member's pyproject.toml"
    assert {"uv.lock", f"services/{service}/src", "shared/src", "connector/src"} <= copied
    # the dev tools' code is not even in the build context
    assert not [s for s in copied if s.startswith("devtools/") and s != "devtools/pyproject.toml"]
    assert ignored_by_docker("devtools/src/orderflow/devstack/cli.py", patterns)


@pytest.mark.parametrize("service", SERVICES)
def test_the_images_dependency_set_holds_no_dev_tool(service: str) -> None:
    """What the builder's ``uv sync`` installs, resolved from uv.lock without installing
    anything: the service's distribution and what it declares, transitively."""
    syncs = [shlex.split(i.args) for i in _dockerfile(service)
             if i.keyword == "RUN" and i.args.startswith("uv sync")]
    assert syncs
    widening = {"--extra", "--all-extras", "--group", "--all-groups", "--only-group", "--dev",
                "--only-dev", "--all-packages"}
    for argv in syncs:
        assert {"--frozen", "--no-dev"} <= set(argv), argv
        assert argv[argv.index("--package") + 1] == f"orderflow-{service}", argv
        assert not widening & {a.split("=", 1)[0] for a in argv}, argv
    installed = locked_dependencies(f"orderflow-{service}")
    assert {f"orderflow-{service}", "orderflow-shared", "sqlalchemy", "asyncpg", "aiokafka"} <= installed
    assert not installed & DEV_ONLY, sorted(installed & DEV_ONLY)
    assert {n for n in installed if n.startswith("orderflow-")} == {
        f"orderflow-{service}", "orderflow-shared", "orderflow-connector"}


@pytest.mark.parametrize("service", SERVICES)
def test_image_rules(service: str) -> None:
    instructions = _dockerfile(service)
    stages = [i for i in instructions if i.keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage: a builder and a runtime"
    args = {i.args.split("=", 1)[0]: i.args.split("=", 1)[1] for i in instructions
            if i.keyword == "ARG" and "=" in i.args}
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    runtime = stages[-1].stage
    final = [i for i in instructions if i.stage == runtime]

    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert "uv sync --frozen --no-dev" in runs
    assert f"--package orderflow-{service}" in runs
    assert "--extra" not in runs and "--all-packages" not in runs and "--all-extras" not in runs

    user = [i.args for i in final if i.keyword == "USER"]
    assert user and user[-1].split(":")[0] not in {"root", "0"}, "the runtime runs as a non-root user"
    assert not [i for i in final if i.keyword == "RUN" and "apt-get" in i.args], "slim: no extra packages"

    (healthcheck,) = [i for i in final if i.keyword == "HEALTHCHECK"]
    command = healthcheck.args.split("CMD", 1)[1].strip()
    probe = exec_form(command)
    assert probe[:2] == ["python", "-c"] and "urllib.request" in probe[2] and "/healthz" in probe[2]
    assert "ORDERFLOW_HTTP_PORT" in probe[2]
    compile(probe[2], "HEALTHCHECK", "exec")

    (cmd,) = [i for i in final if i.keyword == "CMD"]
    shell, flag, script = exec_form(cmd.args)
    assert (shell, flag) == ("/bin/sh", "-c")
    # the shell hands over to Python (exec), which then receives the SIGTERM itself
    started = shlex.split(substitute(script, env_of(instructions, runtime)))
    assert started == ["exec", "python", "-m", f"orderflow.{service}"], started
    assert module_exists(f"orderflow.{service}.__main__"), f"CMD: orderflow.{service} has no __main__"
    labels = " ".join(i.args for i in final if i.keyword == "LABEL")
    assert f'title="orderflow-{service}"' in labels

    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "ORDERFLOW_HTTP_HOST=0.0.0.0" in env and "ORDERFLOW_HTTP_PORT=8080" in env
    exposed = [i.args for i in final if i.keyword == "EXPOSE"]
    assert exposed == ["8080"]


def _base_python() -> str:
    return os.path.realpath(sys.executable)


@pytest.mark.parametrize("service", SERVICES)
def test_builder_stage_installs_only_the_service_from_the_lock_file(service: str, tmp_path: Path) -> None:
    """Replays the builder stage's COPY and ``uv sync`` steps (offline, from uv's cache that
    ``make install`` filled), then starts the result's Python: the service's composition root
    imports, and no other service or dev tool is installed."""
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(uv).exists():
        pytest.skip("uv is not installed here")
    context, venv = tmp_path / "src", tmp_path / "venv"
    instructions = _dockerfile(service)
    builder = [i for i in instructions if i.stage == 0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env.update(env_of(instructions, 0))
    env.update({"UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON": _base_python(), "UV_OFFLINE": "1",
                "UV_COMPILE_BYTECODE": "0", "UV_LINK_MODE": "symlink"})  # faster; same packages
    workdir = context
    for instruction in builder:
        if instruction.keyword == "WORKDIR":
            workdir = context
        elif instruction.keyword == "COPY":
            *sources, destination = instruction.args.split()
            for source in sources:
                target = workdir / destination
                if destination.endswith("/") or len(sources) > 1:
                    target = target / Path(source).name
                target.parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy2(ROOT / source, target)
        elif instruction.keyword == "RUN" and instruction.args.startswith("uv "):
            argv = [uv, *instruction.args.split()[1:]]
            done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, (
                f"{instruction.args} failed (offline, from uv's cache: run `make install` first)\n"
                f"{done.stderr[-3000:]}")
    unwanted = sorted({f"orderflow-{s}" for s in SERVICES if s != service} | DEV_ONLY)
    check = (
        "import importlib, importlib.metadata as md, importlib.util as u\n"
        f"definition = importlib.import_module('orderflow.{service}.app').create_service()\n"
        f"assert definition.name == {service!r}, definition.name\n"
        f"assert u.find_spec('orderflow.{service}.__main__') is not None\n"
        "dists = {d.metadata['Name'].lower() for d in md.distributions()}\n"
        f"assert not dists & set({unwanted!r}), dists & set({unwanted!r})\n"
        "assert {'orderflow-shared', 'orderflow-connector'} <= dists\n"
        "assert u.find_spec('orderflow.devstack') is None and u.find_spec('orderflow.testing') is None\n"
        "import orderflow.runtime.service, orderflow.runtime.tracing\n"
    )
    python = venv / "bin" / "python"
    done = subprocess.run([str(python), "-c", check], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
