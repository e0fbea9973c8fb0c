"""``sampan image`` argument wiring and output formatting."""

from __future__ import annotations

import argparse

from sampan.cli import image as image_cli


def test_register_adds_the_image_command():
    p = argparse.ArgumentParser(prog="sampan")
    sub = p.add_subparsers(dest="command", required=True)
    image_cli.register(sub)
    args = p.parse_args(["image", "--data-dir", "/d", "build", "busybox", "--tag", "a:1",
                         "--tag", "b:2"])
    assert (args.command, args.image_command, args.what, args.tag) == (
        "image", "build", "busybox", ["a:1", "b:2"])
    assert args.data_dir == "/d" and args.image_run is image_cli.run and args.log_level
    args = p.parse_args(["image", "pull", "127.0.0.1:5000/x", "--insecure"])
    assert args.data_dir == image_cli.DEFAULT_DATA_DIR and args.insecure
    assert p.parse_args(["image", "rm", "a", "b"]).refs == ["a", "b"]


def test_human_size_matches_docker():
    assert image_cli.human_size(1984447) == "1.984MB"
    assert image_cli.human_size(999) == "999B"
    assert image_cli.human_size(4_300_000_000) == "4.3GB"


def test_ls_and_rm(tmp_path, capsys):
    data = str(tmp_path)
    assert image_cli.main(["--data-dir", data, "ls"]) == 0
    assert capsys.readouterr().out.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "SIZE"]
    assert image_cli.main(["--data-dir", data, "rm", "nope"]) == 1
    assert "no such image 'nope'" in capsys.readouterr().err
    assert image_cli.main(["--data-dir", data, "import", str(tmp_path / "missing.tar")]) == 1
    assert "sampan image import:" in capsys.readouterr().err
