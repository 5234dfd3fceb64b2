"""The Vagrant box: its recipe's hash, the box file vagrant-libvirt reads, the cache and the errors a
user gets, checked without a build; and one real build (marked vagrant), added to chaoslab's Vagrant
home, then a cache hit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from chaoslab.errors import ChaoslabError
from chaoslab.lab import box

QCOW2_MAGIC = b"QFI\xfb"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def build_output(directory: Path, size: str = "4G", image_format: str = "qcow2", virtual_size: int = 4) -> Path:
    """What build.sh leaves in its output directory: box.img and metadata.json (an empty image here)."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([tool("qemu-img"), "create", "-q", "-f", image_format, str(directory / "box.img"), size], check=True)
    (directory / "metadata.json").write_text(
        f'{{"provider": "libvirt", "format": "qcow2", "virtual_size": {virtual_size}}}\n', encoding="utf-8")
    return directory


def fake_vagrant_home(home: Path, recipe: str) -> Path:
    """A Vagrant home holding the box as `vagrant box add` leaves it: boxes/<name>/0/libvirt/."""
    directory = home / "boxes" / box.BOX_NAME.replace("/", "-VAGRANTSLASH-") / "0" / "libvirt"
    directory.mkdir(parents=True)
    (directory / "box.img").write_bytes(QCOW2_MAGIC)
    (directory / "metadata.json").write_text(json.dumps(
        {"provider": "libvirt", "format": "qcow2", "virtual_size": 4, box.RECIPE_KEY: recipe}), encoding="utf-8")
    return directory


def test_recipe_scripts_pass_shellcheck():
    scripts = sorted(str(path) for path in box.RECIPE_DIR.glob("*.sh"))
    assert scripts
    result = subprocess.run([tool("shellcheck"), *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_recipe_hash_changes_when_a_recipe_file_changes(tmp_path: Path):
    recipe = tmp_path / "box"
    shutil.copytree(box.RECIPE_DIR, recipe)
    original = box.recipe_hash(recipe)
    assert original == box.recipe_hash(), "a copy of the recipe hashes like the recipe"
    assert len(original) == 64

    packages = recipe / "packages"
    text = packages.read_text(encoding="utf-8")
    packages.write_text(text + "less\n", encoding="utf-8")
    assert box.recipe_hash(recipe) != original, "a package more is another box"
    packages.write_text(text, encoding="utf-8")
    assert box.recipe_hash(recipe) == original

    (recipe / "customize.sh").rename(recipe / "customize-renamed.sh")
    assert box.recipe_hash(recipe) != original, "a file's name is part of the recipe"
    (recipe / "customize-renamed.sh").rename(recipe / "customize.sh")

    (recipe / "hooks").mkdir()
    (recipe / "hooks" / "extra.sh").write_text("#!/bin/sh\n", encoding="utf-8")
    assert box.recipe_hash(recipe) != original, "a new file, in a subfolder too, is part of the recipe"


def test_packed_box_holds_what_vagrant_libvirt_reads(tmp_path: Path):
    output = build_output(tmp_path / "work")
    target = tmp_path / "test.box"
    metadata = box.pack(output, target, "0123abcd")
    # vagrant-libvirt's box format v1: qcow2 only, virtual_size in whole GiB (it allocates the VM's disk)
    assert metadata == {"provider": "libvirt", "format": "qcow2", "virtual_size": 4, box.RECIPE_KEY: "0123abcd"}
    with tarfile.open(target) as archive:
        assert sorted(archive.getnames()) == ["box.img", "metadata.json"], "both at the top of the box file"
        packed = json.load(archive.extractfile("metadata.json"))
        image_start = archive.extractfile("box.img").read(4)
    assert packed == metadata
    assert type(packed["virtual_size"]) is int
    assert image_start == QCOW2_MAGIC
    assert not target.with_name("test.box.partial").exists()


def test_virtual_size_is_rounded_up_to_whole_gib(tmp_path: Path):
    output = build_output(tmp_path / "work", size="4608M", virtual_size=5)
    assert box.pack(output, tmp_path / "test.box", "r")["virtual_size"] == 5


def test_pack_refuses_an_image_that_is_not_qcow2(tmp_path: Path):
    output = build_output(tmp_path / "work", image_format="raw")
    with pytest.raises(ChaoslabError, match="not qcow2"):
        box.pack(output, tmp_path / "test.box", "r")
    assert not (tmp_path / "test.box").exists()


def test_pack_refuses_metadata_that_disagrees_with_the_image(tmp_path: Path):
    output = build_output(tmp_path / "work", virtual_size=8)
    with pytest.raises(ChaoslabError, match="virtual_size 8"):
        box.pack(output, tmp_path / "test.box", "r")


def test_box_of_the_same_recipe_is_a_cache_hit_and_another_recipe_rebuilds(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(box, "VAGRANT_HOME", tmp_path / "vagrant-home")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # a cache hit needs no root
    metadata = fake_vagrant_home(box.VAGRANT_HOME, box.recipe_hash()) / "metadata.json"
    lines = box.build()
    assert len(lines) == 1 and "cached" in lines[0] and "nothing built" in lines[0], lines
    assert box.vagrant_environment()["VAGRANT_HOME"] == str(tmp_path / "vagrant-home")

    metadata.write_text(json.dumps({"provider": "libvirt", box.RECIPE_KEY: "an older recipe"}), encoding="utf-8")
    with pytest.raises(ChaoslabError, match="building the box needs root"):
        box.build()


def test_building_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(box, "VAGRANT_HOME", tmp_path / "no-box-here")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ChaoslabError, match="building the box needs root: mmdebstrap, loop devices and chroot"):
        box.build()


def test_a_missing_tool_names_its_debian_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(box, "VAGRANT_HOME", tmp_path / "no-box-here")
    monkeypatch.setattr(box, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "sfdisk" else which(name) or f"/usr/bin/{name}")
    with pytest.raises(ChaoslabError, match=r"missing sfdisk: building the box runs them; install them with: apt-get "
                                            r"install fdisk"):
        box.build()
    assert not (tmp_path / "cache").exists(), "nothing is started without the tools"


def test_a_failed_step_names_its_log(tmp_path: Path):
    log = tmp_path / "step.log"
    with pytest.raises(ChaoslabError) as error:
        box._run(["bash", "-c", "echo preparing; echo 'E: no such package' >&2; exit 3"], log, "a step", 30)
    message = str(error.value)
    assert "a step failed (exit 3)" in message and "E: no such package" in message and str(log) in message
    assert "preparing" in log.read_text(encoding="utf-8")


def test_a_step_that_takes_too_long_is_stopped_and_cleans_up(tmp_path: Path):
    log, marker = tmp_path / "step.log", tmp_path / "cleaned-up"
    script = f"trap 'touch {marker}; exit 143' TERM; sleep 30 & wait"
    started = time.monotonic()
    with pytest.raises(ChaoslabError, match="took longer than 1 s"):
        box._run(["bash", "-c", script], log, "a step", 1)
    assert time.monotonic() - started < 10
    assert marker.exists(), "the step got SIGTERM and ran its cleanup"


@pytest.mark.vagrant
def test_build_adds_the_box_and_a_second_build_is_a_cache_hit():
    if os.geteuid() != 0:
        pytest.skip("building the box needs root")
    lines = box.build()
    assert lines
    listed = subprocess.run(["vagrant", "box", "list"], env=box.vagrant_environment(), capture_output=True, text=True,
                            timeout=300)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert f"{box.BOX_NAME} (libvirt, " in listed.stdout, listed.stdout
    assert box.added_recipe() == box.recipe_hash()
    # the added box as vagrant-libvirt reads it
    directory = box.added_box_directories()[0]
    metadata = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
    info = box.image_info(directory / "box.img")
    assert metadata["provider"] == "libvirt" and metadata["format"] == info["format"] == "qcow2"
    assert info["virtual-size"] <= metadata["virtual_size"] * box.GIB
    assert box.box_file().is_file() and box.stamp_file().read_text(encoding="utf-8").strip() == box.recipe_hash()

    started = time.monotonic()
    again = box.build()
    elapsed = time.monotonic() - started
    assert elapsed < 3, f"a cache hit took {elapsed:.1f} s"
    assert len(again) == 1 and "cached" in again[0] and "nothing built" in again[0], again
