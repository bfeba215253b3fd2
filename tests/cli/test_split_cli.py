"""`rgfl split` through the Typer app: help, real run, option errors, strict mode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rgfl.cli.main import app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, ["split", *args])
    assert "Traceback" not in result.output, result.output
    return result


def flat(text: str) -> str:
    """Output with rich's line wrapping and box borders removed."""
    return " ".join(text.replace("│", " ").split())


def test_help_explains_the_preset_naming():
    result = invoke("--help")
    assert result.exit_code == 0
    text = flat(result.output)
    assert "STEP 824 (= overlap 200" in text and "STEP 512 (= overlap 512)" in text
    assert "The number after the size is the step" in text
    for option in ("--overlap", "--step", "--rates", "--iof-thr", "--img-rate-thr", "--pad-value", "--no-pad", "--clip", "--strict", "--workers"):
        assert option in result.output


def test_split_real_sample_prints_summary(dota_sample, tmp_path):
    out = tmp_path / "out"
    result = invoke(str(dota_sample), str(out), "--preset", "dota-1024-512", "--workers", "1", "--classes", "dota1.0")
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "patches" in text and "truncated" in text and "skipped bad" in text
    assert text.count("P0770.txt") == 1  # label file without image: one warning
    manifest = json.loads((out / "split_manifest.json").read_text())
    assert manifest["parameters"]["step"] == 512 and manifest["parameters"]["overlap"] == 512
    assert len(list((out / "images").glob("*.png"))) == 5


def test_strict_exits_naming_the_file(dota_sample, tmp_path):
    result = invoke(str(dota_sample), str(tmp_path / "out"), "--strict", "--workers", "1")
    assert result.exit_code == 2
    assert "P0770.txt: label file has no image" in flat(result.output)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--overlap", "1024"], "smaller than --size"),
        (["--overlap", "100", "--step", "500"], "not both"),
        (["--preset", "dota-1024-512", "--size", "800"], "either --preset"),
        (["--preset", "dota-1024-700"], "dota-1024-700"),
        (["--pad-value", "1,2,x"], "comma-separated numbers"),
        (["--pad-value", "1,2"], "B,G,R"),
        (["--rates", "0"], "rates must be positive"),
        (["--ext", "gif"], "gif"),
        (["--iof-thr", "2"], "iof-thr"),
        (["--classes", "dota3"], "unknown class set"),  # one plain word is a one-class list
    ],
)
def test_bad_option_values(dota_sample, tmp_path, args, message):
    result = invoke(str(dota_sample), str(tmp_path / "out"), *args)
    assert result.exit_code == 2, result.output
    assert message in flat(result.output), result.output
    assert not (tmp_path / "out" / "images").exists()


def test_bad_source_path(tmp_path):
    result = invoke(str(tmp_path / "missing"), str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "is not a folder" in flat(result.output)
    (tmp_path / "empty").mkdir()
    result = invoke(str(tmp_path / "empty"), str(tmp_path / "out"))
    assert result.exit_code == 2 and "no images/ folder" in flat(result.output)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_with_workers_leaves_no_partial_files(tmp_path):
    """A real `rgfl split --workers 2` process group interrupted with SIGINT mid-run."""
    rng = np.random.default_rng(0)
    (tmp_path / "src" / "images").mkdir(parents=True)
    for k in range(8):
        noise = rng.integers(0, 256, (1800, 1800, 3), dtype=np.uint8)  # slow to encode on purpose
        cv2.imwrite(str(tmp_path / "src" / "images" / f"N{k}.png"), noise, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    out = tmp_path / "out"
    rgfl = Path(sys.executable).with_name("rgfl")

    def own_group_with_default_sigint():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.setsid()

    process = subprocess.Popen(
        [str(rgfl), "split", str(tmp_path / "src"), str(out), "--workers", "2", "--size", "512", "--overlap", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=own_group_with_default_sigint,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list((out / "images").glob("*.png")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stdout + stderr, stderr
    assert process.returncode == 130, (process.returncode, stderr)
    assert "interrupted" in stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not (out / "split_manifest.json").exists()
    for patch in (out / "images").glob("*.png"):  # every patch under its final name is complete
        assert cv2.imread(str(patch)).shape == (512, 512, 3)
    # Resuming finishes the job.
    result = invoke(str(tmp_path / "src"), str(out), "--workers", "2", "--size", "512", "--overlap", "0")
    assert result.exit_code == 0
    assert len(list((out / "images").glob("*.png"))) == 8 * 16
