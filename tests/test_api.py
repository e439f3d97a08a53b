"""The Python API is a library: it prints nothing unless asked, and keeps earlier models."""

from __future__ import annotations

import pytest
from pipeline_support import make_tree

import genreflow


@pytest.mark.slow
def test_run_and_predict_print_nothing_unless_verbose(tmp_path, capsys):
    make_tree(tmp_path, per_genre=4, seconds=1.0)
    result = genreflow.run(str(tmp_path), features="mfcc", workers=2, audio__duration_s=1.0)
    assert result["metrics"]["accuracy"] is not None
    model = genreflow.load_model(str(tmp_path / "processed" / "classifier_model.zip"))
    frame = model.predict([str(tmp_path / "raw")])
    assert len(frame) == 8 and (frame.error == "").all()
    out, err = capsys.readouterr()
    assert out == "" and err == "", (out, err)
    again = genreflow.run(str(tmp_path), features="mfcc", workers=2, audio__duration_s=1.0, verbose=True)
    out, _ = capsys.readouterr()
    assert "accuracy:" in out and "== index" in out and "model up to date" in out  # same inputs: not retrained
    assert again["metrics"]["accuracy"] == result["metrics"]["accuracy"]
    assert len(list((tmp_path / "processed" / "models").glob("*.zip"))) == 1
    genreflow.run(str(tmp_path), features="mfcc", workers=2, audio__duration_s=1.0, retrain=True)
    assert len(list((tmp_path / "processed" / "models").glob("*.zip"))) == 2  # the first model was kept
