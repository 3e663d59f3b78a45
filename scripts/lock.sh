#!/usr/bin/env bash
# The lockfiles, regenerated from pyproject.toml: every package pinned to one version, with the
# sha256 of each of its files on PyPI, so that `pip install --require-hashes` installs exactly
# what was reviewed, or nothing. One lock per need:
#
#   requirements/build.txt     pip and the build backend ([build-system] requires): installed
#                              first, then the project with --no-build-isolation, so that its
#                              build fetches nothing unlocked either
#   requirements/service.txt   the runtime dependencies ([project] dependencies): the images
#   requirements/dev.txt       the lab, the bench and the tests (the `dev` extra), with every
#                              package the images have at the images' version
#                              (scripts/setup.sh: CI, `bash scripts/test.sh`, `bash scripts/lab.sh`)
#   requirements/moto.txt      the compose stack's AWS emulator (deploy/compose/moto/Dockerfile):
#                              moto[server] at the lab's version, with the lab's dependencies
#
#   bash scripts/lock.sh                       # after a change to pyproject.toml: versions
#                                              # already locked are kept where they still fit
#   bash scripts/lock.sh --upgrade             # everything to the newest that fits
#   bash scripts/lock.sh --upgrade-package X   # only X (and what it needs)
#
# uv (`uv pip compile`, itself from PyPI at the version below, in .venv-lock/) rather than
# pip-tools: it resolves for a given Python and platform instead of the interpreter it runs on
# (the images' Python 3.11 on Linux, whatever runs this script), and records the hashes of all
# of a version's files (every wheel and the sdist), so one lock serves x86_64 and arm64 builds.
# Its output is a plain requirements file: pip installs it, no uv needed to use the locks.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
# The images' Python (services/*/Dockerfile: python:3.11-slim-bookworm) and CI's.
PYTHON_VERSION=3.11
TOOL=.venv-lock

if [ "$("$TOOL/bin/uv" --version 2>/dev/null | cut -d" " -f2)" != "$UV_VERSION" ]; then
    echo "lock: installing uv $UV_VERSION into $TOOL"
    python3 -m venv "$TOOL"
    "$TOOL/bin/python" -m pip install -q "uv==$UV_VERSION"
fi

compile() {  # compile OUTPUT UV-ARGS...: one lock, its header naming this script
    local output=requirements/$1
    shift
    "$TOOL/bin/uv" pip compile --quiet --generate-hashes --python-version "$PYTHON_VERSION" \
        --python-platform linux --custom-compile-command "bash scripts/lock.sh" \
        --output-file "$output" "$@"
    echo "lock: $output ($(grep -c '^[A-Za-z0-9]' "$output") packages)"
}

mkdir -p requirements
extra=("${@}")

# pip itself, and what builds the project (read from pyproject.toml, one source of truth)
{
    echo pip
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))'
} | compile build.txt - "${extra[@]}"
compile service.txt pyproject.toml "${extra[@]}"
# The images' versions are the tests' versions: the dev lock is constrained by the service lock.
compile dev.txt pyproject.toml --extra dev --constraint requirements/service.txt "${extra[@]}"
# The emulator image runs the moto the lab and the tests run, with the same dependencies.
moto=$(grep -oE '^moto==[^ ]+' requirements/dev.txt)
echo "moto[server]==${moto#moto==}" |
    compile moto.txt - --constraint requirements/dev.txt "${extra[@]}"
