"""The Vagrant box of the lab's VMs: Debian 12 for libvirt, built offline with mmdebstrap.

No box can be downloaded on the lab's machines, so the box is made here from the apt mirror
by the recipe in provision/box/ (build.sh, its package list and its mmdebstrap hook) and added
to a Vagrant home of chaoslab's own (nothing under the user's home). The build is cached: the
recipe's hash is stamped on the built .box file and written into the added box's
metadata.json, and a box added from the same recipe is not built again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from chaoslab.commands import require_binaries
from chaoslab.errors import ChaoslabError
from chaoslab.paths import PROVISION_DIR

BOX_NAME = "chaoslab/debian-12"
PROVIDER = "libvirt"
RECIPE_DIR = PROVISION_DIR / "box"
BUILD_SCRIPT = RECIPE_DIR / "build.sh"
CACHE_DIR = Path("/var/cache/chaoslab/box")
VAGRANT_HOME = Path("/var/lib/chaoslab/vagrant-home")
# the key of the recipe's hash in a box's metadata.json (vagrant-libvirt reads only its own keys)
RECIPE_KEY = "chaoslab_recipe_sha256"
GIB = 1024**3
BUILD_TIMEOUT = 3600.0  # seconds; a build takes about 1.5 min on 2 cores
ADD_TIMEOUT = 900.0
STOP_GRACE = 60.0  # seconds build.sh gets to unmount and detach after SIGTERM

# the programs a build runs (chaoslab.commands.PACKAGES names their packages)
TOOLS = ("mmdebstrap", "sfdisk", "partx", "losetup", "mkfs.ext4", "fstrim", "unshare", "qemu-img", "vagrant", "bsdtar")


def recipe_hash(recipe_dir: Path | None = None) -> str:
    """The sha256 over every file of the recipe (names and contents): any change rebuilds the box."""
    directory = recipe_dir or RECIPE_DIR
    digest = hashlib.sha256()
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    if not files:
        raise ChaoslabError(f"no box recipe in {directory}")
    for path in files:
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def vagrant_environment() -> dict[str, str]:
    """The environment for vagrant commands on chaoslab's boxes: os.environ plus VAGRANT_HOME."""
    return {**os.environ, "VAGRANT_HOME": str(VAGRANT_HOME)}


def box_file(name: str = BOX_NAME) -> Path:
    """Where the built .box file is cached."""
    return CACHE_DIR / f"{name.replace('/', '-')}.box"


def stamp_file(name: str = BOX_NAME) -> Path:
    """The recipe hash the cached .box file was built from."""
    return CACHE_DIR / f"{name.replace('/', '-')}.recipe"


def added_box_directories(name: str = BOX_NAME) -> list[Path]:
    """The libvirt boxes of that name in chaoslab's Vagrant home (one per version; a local add is version 0)."""
    boxes = VAGRANT_HOME / "boxes" / name.replace("/", "-VAGRANTSLASH-")
    return sorted(path for path in boxes.glob(f"*/{PROVIDER}") if path.is_dir())


def added_recipe(name: str = BOX_NAME) -> str | None:
    """The recipe hash of the box of that name added to chaoslab's Vagrant home, or None."""
    for directory in added_box_directories(name):
        try:
            metadata = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (directory / "box.img").is_file() and isinstance(metadata, dict) and metadata.get(RECIPE_KEY):
            return str(metadata[RECIPE_KEY])
    return None


def image_info(image: Path) -> dict[str, Any]:
    """qemu-img's view of a disk image: format, virtual-size..."""
    result = subprocess.run(["qemu-img", "info", "--output=json", str(image)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ChaoslabError(f"qemu-img cannot read {image}: {result.stderr.strip()}")
    return json.loads(result.stdout)


def box_metadata(image: Path, recipe: str) -> dict[str, Any]:
    """The metadata.json vagrant-libvirt expects of a box whose disk is `image` (box format v1):
    provider libvirt, format qcow2 and the virtual size in whole GiB, which vagrant-libvirt
    allocates for the VM's disk; plus the recipe's hash, for the cache."""
    info = image_info(image)
    if info.get("format") != "qcow2":
        raise ChaoslabError(f"{image} is {info.get('format')!r}, not qcow2: vagrant-libvirt boots only qcow2 boxes")
    return {
        "provider": PROVIDER,
        "format": "qcow2",
        "virtual_size": math.ceil(int(info["virtual-size"]) / GIB),
        RECIPE_KEY: recipe,
    }


def pack(build_dir: Path, target: Path, recipe: str) -> dict[str, Any]:
    """Write the box file `target` from build.sh's output in `build_dir` (box.img, metadata.json and
    an optional Vagrantfile): a tar file with the metadata of box_metadata(). Returns the metadata."""
    image = build_dir / "box.img"
    metadata = box_metadata(image, recipe)
    written = json.loads((build_dir / "metadata.json").read_text(encoding="utf-8"))
    for key in ("provider", "format", "virtual_size"):
        if written.get(key) != metadata[key]:
            raise ChaoslabError(f"{build_dir / 'metadata.json'} says {key} {written.get(key)!r}, "
                                f"but the image is {metadata[key]!r}")
    (build_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w") as archive:
        for member in ("metadata.json", "Vagrantfile", "box.img"):
            if (build_dir / member).is_file():
                archive.add(build_dir / member, arcname=member)
    partial.replace(target)
    return metadata


def build(force: bool = False) -> list[str]:
    """Build the box from the recipe and add it to chaoslab's Vagrant home as BOX_NAME, unless a box
    from the same recipe is there already (force: build anyway). Returns what it did, line by line."""
    recipe = recipe_hash()
    short = recipe[:12]
    if not force and added_recipe() == recipe:
        return [f"box {BOX_NAME} is cached in VAGRANT_HOME={VAGRANT_HOME}, up to date with recipe {short}: nothing built"]
    if os.geteuid() != 0:
        raise ChaoslabError("building the box needs root: mmdebstrap, loop devices and chroot")
    require_binaries(TOOLS, "building the box runs them")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    with _lock(CACHE_DIR / "build.lock"):
        target, stamp = box_file(), stamp_file()
        cached = target.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == recipe
        if cached and not force:
            lines.append(f"box file {target} is cached, up to date with recipe {short}: not built again")
        else:
            lines += _build_box_file(recipe, target, stamp)
        lines += _add(target)
    added = added_recipe()
    if added != recipe:
        raise ChaoslabError(f"vagrant box add reported success, but {BOX_NAME} in {VAGRANT_HOME} has recipe {added}, "
                            f"not {short}; see {CACHE_DIR / 'box-add.log'}")
    return lines


def _build_box_file(recipe: str, target: Path, stamp: Path) -> list[str]:
    work = CACHE_DIR / "work"
    shutil.rmtree(work, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    target.unlink(missing_ok=True)
    log = CACHE_DIR / "build.log"
    started = time.monotonic()
    _run(["bash", str(BUILD_SCRIPT), str(work)], log, "building the box image (provision/box/build.sh)", BUILD_TIMEOUT)
    built = time.monotonic()
    try:
        metadata = pack(work, target, recipe)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stamp.write_text(recipe + "\n", encoding="utf-8")
    return [
        f"built the image from recipe {recipe[:12]} in {built - started:.1f} s (log: {log})",
        f"packed {target} ({target.stat().st_size / GIB:.2f} GiB, {metadata['format']}, "
        f"virtual size {metadata['virtual_size']} GiB) in {time.monotonic() - built:.1f} s",
    ]


def _add(target: Path) -> list[str]:
    VAGRANT_HOME.mkdir(parents=True, exist_ok=True)
    log = CACHE_DIR / "box-add.log"
    started = time.monotonic()
    _run(["vagrant", "box", "add", "--force", "--name", BOX_NAME, str(target)], log,
         f"vagrant box add {BOX_NAME}", ADD_TIMEOUT, env=vagrant_environment())
    return [f"added box {BOX_NAME} ({PROVIDER}) to VAGRANT_HOME={VAGRANT_HOME} in {time.monotonic() - started:.1f} s"]


def _run(command: Sequence[str], log: Path, what: str, timeout: float, env: dict[str, str] | None = None) -> None:
    """Run a step with its output in `log`. On a timeout or Ctrl-C the step gets SIGTERM and time to
    clean up after itself (build.sh unmounts and detaches its loop device), then SIGKILL."""
    with log.open("w", encoding="utf-8") as output:
        output.write(f"$ {' '.join(command)}\n")
        output.flush()
        try:
            process = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True)
        except OSError as error:
            raise ChaoslabError(f"{what}: cannot run {command[0]}: {error}") from error
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(process)
            raise ChaoslabError(f"{what} took longer than {timeout:.0f} s and was stopped; see {log}") from None
        except BaseException:
            _stop(process)
            raise
    if returncode != 0:
        raise ChaoslabError(f"{what} failed (exit {returncode}): {_last_line(log)}; see {log}")


def _stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ChaoslabError(f"another chaoslab box build is running (lock {path})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
