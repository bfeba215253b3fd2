"""Does a split folder match the split a config expects (``expected_split``)?

``rgfl split`` records its parameters in ``SPLIT/split_manifest.json``. A reference config states
the split it was written for; this module compares the two before training starts. Two kinds of
difference:

* rules: ``truncation`` and ``iof_thr`` decide which objects a patch holds and with which
  difficulty, i.e. which objects are trained as positives. With ``check: error`` (the default) a
  difference stops ``rgfl train`` with the exact ``rgfl split`` command that makes the expected
  split; ``warn`` only logs it, ``ignore`` skips the check.
* data: ``size``, ``step``, ``rates``, ``pad_value`` describe another row of the results table
  (or another data set); they are logged as warnings and never stop training.

A folder without a manifest (for example one written by the DOTA development kit itself) cannot be
checked: a warning says so.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from rgfl.engine.config import Config, ExpectedSplitConfig
from rgfl.errors import InputError

__all__ = ["SplitCheck", "compare_split", "check_expected_split", "split_command_for"]

logger = logging.getLogger(__name__)

RULE_KEYS = ("truncation", "iof_thr")
DATA_KEYS = ("size", "step", "rates", "pad_value")
_TRUNCATION_WORDS = {
    "clip-int": "clip-int (`rgfl split --clip`, the DOTA devkit: cut objects clipped, difficulty 2 only at IoF <= 0.7)",
    "clip": "clip with float coordinates (an older `rgfl split --clip`)",
    "keep": "keep (mmrotate: cut objects whole, every one difficulty 2)",
}


@dataclass
class SplitCheck:
    """The outcome of comparing a split's manifest with ``expected_split``."""

    manifest_found: bool
    rule_mismatches: list[str] = field(default_factory=list)  # "key: split has X, config expects Y"
    data_mismatches: list[str] = field(default_factory=list)
    command: str | None = None  # the `rgfl split` command that makes the expected split

    @property
    def ok(self) -> bool:
        return not self.rule_mismatches and not self.data_mismatches


def _same(key: str, found, expected) -> bool:
    if key in ("rates", "pad_value"):
        if found is None or expected is None:
            return found is None and expected is None
        return [float(v) for v in found] == [float(v) for v in expected]
    if key == "iof_thr":
        return found is not None and abs(float(found) - float(expected)) < 1e-9
    return found == expected


def _describe(key: str, value) -> str:
    if key == "truncation":
        return _TRUNCATION_WORDS.get(str(value), repr(value))
    return "none" if value is None else str(value)


def split_command_for(expected: ExpectedSplitConfig, parameters: dict, source: str | None, out: Path) -> str:
    """The ``rgfl split`` command that writes the expected split next to ``out``."""
    size = expected.size if expected.size is not None else parameters.get("size", 1024)
    step = expected.step if expected.step is not None else parameters.get("step", size)
    truncation = expected.truncation if expected.truncation is not None else parameters.get("truncation", "keep")
    from rgfl.dota.split import PRESETS

    suffix = "devkit" if truncation != "keep" else "mmrotate"
    parts = ["rgfl", "split", source or "SRC", str(out.parent / f"{out.name}_{suffix}")]
    preset = next((name for name, geometry in PRESETS.items() if geometry == (size, step)), None)
    parts += ["--preset", preset] if preset else ["--size", str(size), "--step", str(step)]
    rates = expected.rates if expected.rates is not None else parameters.get("rates")
    if rates and [float(r) for r in rates] != [1.0]:
        parts += ["--rates", ",".join(f"{float(r):g}" for r in rates)]
    if truncation != "keep":
        parts.append("--clip")
    iof = expected.iof_thr if expected.iof_thr is not None else parameters.get("iof_thr")
    if iof is not None and abs(float(iof) - 0.7) > 1e-9:
        parts += ["--iof-thr", f"{float(iof):g}"]
    pad = expected.pad_value if expected.pad_value is not None else parameters.get("pad_value")
    if pad is None:
        parts.append("--no-pad")
    elif [int(v) for v in pad] != [104, 116, 124]:
        parts += ["--pad-value", ",".join(str(int(v)) for v in pad)]
    return " ".join(shlex.quote(p) for p in parts)


def compare_split(expected: ExpectedSplitConfig, root: str | Path) -> SplitCheck:
    """Compare the manifest of split folder ``root`` with ``expected`` (nothing is raised)."""
    from rgfl.dota.split_manifest import MANIFEST_NAME, read_manifest

    root = Path(root)
    if not (root / MANIFEST_NAME).is_file():
        return SplitCheck(manifest_found=False)
    manifest = read_manifest(root)
    parameters = manifest.get("parameters", {})
    result = SplitCheck(manifest_found=True)
    for keys, out in ((RULE_KEYS, result.rule_mismatches), (DATA_KEYS, result.data_mismatches)):
        for key in keys:
            wanted = getattr(expected, key)
            if wanted is None:
                continue
            found = parameters.get(key)
            if not _same(key, found, wanted):
                out.append(f"{key}: the split has {_describe(key, found)}, the config expects {_describe(key, wanted)}")
    if not result.ok:
        result.command = split_command_for(expected, parameters, manifest.get("source"), root)
    return result


def check_expected_split(cfg: Config) -> SplitCheck | None:
    """Check ``cfg.data.root`` against ``cfg.expected_split`` before training.

    Returns the comparison (None when nothing is expected or the check is off).

    Raises:
        InputError: a rule differs (truncation, IoF threshold) and ``expected_split.check`` is
            ``error``; the message holds the ``rgfl split`` command that makes the right split.
    """
    expected = cfg.expected_split
    if expected.check == "ignore" or cfg.data.root is None:
        return None
    if all(getattr(expected, key) is None for key in RULE_KEYS + DATA_KEYS):
        return None
    root = Path(cfg.data.root)
    if not root.is_dir():
        return None  # the dataset builder says what is missing
    result = compare_split(expected, root)
    if not result.manifest_found:
        logger.warning(
            "%s has no split_manifest.json (not written by `rgfl split`?): cannot check that it is the split this "
            "config expects (%s)", root, ", ".join(f"{k} {getattr(expected, k)}" for k in RULE_KEYS + DATA_KEYS if getattr(expected, k) is not None),
        )
        return result
    for line in result.data_mismatches:
        logger.warning("%s: %s (a different data setting from the reference row; training goes on)", root, line)
    if result.rule_mismatches:
        reasons = "; ".join(result.rule_mismatches)
        if expected.check == "error":
            raise InputError(
                f"this split would make the config train on other objects than the reference recipe ({reasons}). "
                f"Make the expected split with:  {result.command}  and pass that folder to --data "
                "(or --set expected_split.check=warn to train on this split anyway)",
                root,
            )
        logger.warning("%s: %s (expected_split.check=warn: training goes on)", root, reasons)
    return result
