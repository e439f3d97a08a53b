"""genreflow.config: defaults < genreflow.toml < CLI flags, and one clear line per mistake."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from genreflow.cli import main
from genreflow.config import Config, load_config
from genreflow.data.audio import AudioConfig
from genreflow.data.splits import SplitConfig
from genreflow.errors import ConfigError


def test_defaults():
    config = load_config(None, {})
    assert (config.data_dir, config.workers, config.split.val_fraction, config.split.seed) == ("data", 0, 0.2, 42)
    assert config.audio == AudioConfig(sample_rate=22050, duration_s=30.0)
    assert config.n_workers >= 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.split.seed = 1  # type: ignore[misc]


def test_toml_overrides_defaults_and_flags_override_toml(tmp_path):
    toml = tmp_path / "custom.toml"
    toml.write_text('data_dir = "from_toml"\nworkers = 3\n[split]\nseed = 7\nval_fraction = 0.3\n'
                    "[audio]\nsample_rate = 16000\n")
    from_toml = load_config(toml, {})
    assert (from_toml.data_dir, from_toml.workers, from_toml.split, from_toml.audio.sample_rate) == (
        "from_toml", 3, SplitConfig(val_fraction=0.3, seed=7), 16000)
    assert from_toml.audio.duration_s == 30.0  # untouched keys keep their defaults
    flags = load_config(toml, {"data_dir": "from_flag", "workers": None, "split.seed": 9, "split.val_fraction": None})
    assert (flags.data_dir, flags.workers, flags.split.seed, flags.split.val_fraction) == ("from_flag", 3, 9, 0.3)


def test_an_error_in_the_automatically_loaded_toml_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "genreflow.toml").write_text("[split]\nseed = -1\n")
    with pytest.raises(ConfigError, match=r"^genreflow.toml: split.seed=-1 is invalid"):
        load_config(None, {})


def test_a_features_typo_suggests_the_nearest_kind():
    with pytest.raises(ConfigError, match=r"train.features \(--features\)='mfc\+spectrl' is invalid: .* Did you "
                                          r"mean 'mfcc' or 'spectral'\?"):
        load_config(None, {"train.features": "mfc+spectrl"})


def test_genreflow_toml_in_the_working_directory_is_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config(None, {}).split.seed == 42
    (tmp_path / "genreflow.toml").write_text("[split]\nseed = 11\n")
    assert load_config(None, {}).split.seed == 11
    explicit = tmp_path / "other.toml"
    explicit.write_text("[split]\nseed = 12\n")
    assert load_config(explicit, {}).split.seed == 12  # --config wins over ./genreflow.toml


@pytest.mark.parametrize(("toml", "message"), [
    ("wrkers = 2\n", "Unknown configuration key 'wrkers' (= 2): allowed keys are address, audio, batch_size, "
                     "data_dir, evaluate, mfcc, musicnn, run, spectral, split, train, vggish, workers."),
    ("[split]\nsed = 1\n", "Unknown configuration key 'split.sed' (= 1): allowed keys in [split] are seed, "
                           "val_fraction."),
    ("[split]\nseed = \"x\"\n", "split.seed='x' is invalid: must be an integer."),
    ("[split]\nval_fraction = true\n", "split.val_fraction=True is invalid: must be a number."),
    ("[audio]\nsample_rate = 22050.5\n", "audio.sample_rate=22050.5 is invalid: must be an integer."),
    ("[audio]\nsample_rate = -16000\n", "audio.sample_rate=-16000 is invalid: must be an integer in "
                                        "[1000, 384000] (Hz), e.g. 22050."),
    # issue 15: values that used to break every file, or store NaN, are refused where config is built
    ("[audio]\nsample_rate = 1000000000000\n", "audio.sample_rate=1000000000000 is invalid: must be an integer "
                                               "in [1000, 384000] (Hz), e.g. 22050."),
    ("[mfcc]\nfmax = inf\n", "mfcc.fmax=inf is invalid: must be 0 (= sample_rate/2) or a finite number > fmin."),
    ("[mfcc]\nn_fft = 1000000000000\n", "mfcc.n_fft=1000000000000 is invalid: must be an integer in [16, 65536]."),
    ("[mfcc]\nn_mels = 100000000\n", "mfcc.n_mels=100000000 is invalid: must be an integer in [1, 1024]."),
    ("[mfcc]\nfmin = 1e9\n", "mfcc.fmin=1000000000.0 is invalid: must be below sample_rate/2 = 11025 Hz."),
    ("[mfcc]\nfmax = 20000.0\n", "mfcc.fmax=20000.0 is invalid: must be 0 or at most sample_rate/2 = 11025 Hz."),
    ("[audio]\nduration_s = nan\n", "audio.duration_s=nan is invalid: must be in (0, 3600] seconds."),
    ("[spectral]\nfmin = 3000.0\n", "spectral.fmin=3000.0 is invalid: must be low enough that fmin * 2**(n_bands-1)"
                                    " = 96000 Hz stays below sample_rate/2 = 11025 Hz (lower fmin or n_bands)."),
    ("[vggish]\nprecision = \"fp16\"\n", "vggish.precision='fp16' is invalid: must be one of auto, fp32, bf16."),
    ("[train]\nclassifier = \"knn\"\n", "train.classifier='knn' is invalid: must be one of logreg, svm, mlp, hgb."),
    ("[train.svm]\nC = -1\n", "train.svm.C=-1 is invalid: must be a float in (0, inf)."),
    ("[split]\nval_fraction = 0\n", "split.val_fraction=0.0 is invalid: must be in the open range (0, 1)."),
    ("[split]\nval_fraction = 1.5\n", "split.val_fraction=1.5 is invalid: must be in the open range (0, 1)."),
    ("split = 3\n", "split=3 is invalid: must be a table (a [split] section)."),
    ("workers = -1\n", "workers=-1 is invalid: must be an integer >= 1 (0 = all CPUs)."),
])
def test_bad_toml_values_name_key_value_and_allowed_range(tmp_path, toml, message):
    path = tmp_path / "genreflow.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}: {message}"  # the file the value came from, then the value
    assert caught.value.exit_code == 2


def test_unreadable_toml_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", {})
    (tmp_path / "broken.toml").write_text("[split\nseed = 1\n")
    with pytest.raises(ConfigError, match=r"'.*broken.toml' is not valid TOML: .*line 1"):
        load_config(tmp_path / "broken.toml", {})


def test_flags_are_validated_like_toml_values():
    with pytest.raises(ConfigError, match=r"^split.val_fraction=1.5 is invalid: must be in the open range \(0, 1\)\.$"):
        load_config(None, {"split.val_fraction": 1.5})
    with pytest.raises(ConfigError, match=r"^split.seed=-3 is invalid"):
        load_config(None, {"split.seed": -3})
    assert Config().split == load_config(None, {"split.seed": None}).split


@pytest.mark.parametrize(("args", "toml", "message"), [
    (["--val-fraction", "1.5"], None, "error: split.val_fraction=1.5 is invalid: must be in the open range (0, 1).\n"),
    (["--val-fraction", "0"], None, "error: split.val_fraction=0.0 is invalid: must be in the open range (0, 1).\n"),
    (["--workers", "-2"], None, "error: workers=-2 is invalid: must be an integer >= 1 (0 = all CPUs).\n"),
    ([], "colour = 1\n", "error: Unknown configuration key 'colour' (= 1): allowed keys are address, audio, "
                         "batch_size, data_dir, evaluate, mfcc, musicnn, run, spectral, split, train, vggish, workers.\n"),
    ([], "[audio]\nsample_rate = -1\n", "error: audio.sample_rate=-1 is invalid: must be an integer in [1000, 384000] (Hz), "
                                        "e.g. 22050.\n"),
])
def test_cli_config_errors_are_one_line_with_exit_status_2(tmp_path, args, toml, message):
    extra = []
    if toml is not None:
        (tmp_path / "g.toml").write_text(toml)
        extra = ["--config", str(tmp_path / "g.toml")]
    result = CliRunner().invoke(main, ["index", "--data-dir", str(tmp_path / "data"), *args, *extra])
    assert result.exit_code == 2
    if toml is not None:
        message = message.replace("error: ", f"error: {tmp_path / 'g.toml'}: ", 1)
    assert result.stderr == message
    assert "Traceback" not in result.output
