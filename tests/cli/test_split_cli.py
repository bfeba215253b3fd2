"""`rgfl split` through the Typer app: help, real run, option errors, strict mode."""

from __future__ import annotations

import json

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
        (["--classes", "nonsense"], "unknown class set"),
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
