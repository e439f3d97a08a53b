"""Issue 12 wiring: the resolved precision is part of a feature set's identity and of the model."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pipeline_support import config_for, make_tree, write_toml

from genreflow.model.bundle import ModelBundle
from genreflow.cli import main
from genreflow.cli.commands import run_index_command
from genreflow.core.host import bf16_flags
from genreflow.errors import ConfigError
from genreflow.config import build_extractor as build
from genreflow.stages.predict import model_extractors

URL = "https://example.org/vggish/1"  # a URL handle is its own identity: no model needed here


def vggish(precision: str, root: Path = Path(".")):
    return build("vggish", config_for(root, 2.0, **{"vggish.handle": URL, "vggish.precision": precision})).resolved()


def test_precision_enters_the_fingerprint_and_auto_resolves_from_this_cpu():
    fp32, bf16, auto = vggish("fp32"), vggish("bf16"), vggish("auto")
    assert fp32.fingerprint() != bf16.fingerprint()
    assert fp32.feature_set("d").location.path != bf16.feature_set("d").location.path  # a new folder
    assert auto.config.precision == ("bf16" if bf16_flags() else "fp32")  # resolved once, in the driver
    assert auto.fingerprint() == (bf16 if bf16_flags() else fp32).fingerprint()
    assert fp32.params()["precision"] == "fp32" and bf16.params()["precision"] == "bf16"


def test_a_bf16_model_predicts_in_bf16_by_default_and_refuses_fp32_features():
    bundle = ModelBundle(pipeline=None, genres=["a", "b"], features="vggish", extractors=[vggish("bf16").recipe()])
    user = {"vggish": {"handle": URL}}  # where the model is loaded from is the user's choice, never the file's
    (default,) = model_extractors(bundle, user)
    assert default.precision == "bf16" and default.fingerprint() == bundle.fingerprints["vggish"]
    with pytest.raises(ConfigError) as refused:
        model_extractors(bundle, {"vggish": {"handle": URL, "precision": "fp32"}})
    message = str(refused.value)
    assert bundle.fingerprints["vggish"] in message and vggish("fp32").fingerprint() in message
    assert "'precision': 'bf16'" in message and "precision='fp32'" in message


def test_status_shows_each_feature_sets_precision(tmp_path):
    make_tree(tmp_path, per_genre=2, seconds=1.0)
    run_index_command(config_for(tmp_path, 2.0))
    for precision in ("fp32", "bf16"):
        vggish(precision, tmp_path).feature_set(str(tmp_path)).ensure_params_file()
    toml = write_toml(tmp_path / "g.toml", duration_s=2.0)
    result = CliRunner().invoke(main, ["status", "--data-dir", str(tmp_path), "--config", str(toml),
                                       "--vggish-model", URL, "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("vggish")]
    assert len(lines) == 2 and any("precision bf16" in l and "yes" in l for l in lines)
    assert any("precision fp32" in l and "yes" not in l for l in lines)
