"""Red-team L8: what the console shows for hostile names and huge invalid lists.

Names with newlines, tabs or bidi controls are shown escaped (never raw), whitespace-only and
hidden genre folders with audio are named in one warning, the invalid list is capped.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pyarrow.fs as pafs
from click.testing import CliRunner

from conftest import write_clip
from genreflow.cli import main
from genreflow.core.fs import Location
from genreflow.data.discovery import discover
from genreflow.data.splits import SplitConfig
from genreflow.stages.index import run_index


def index_cli(data_dir: Path):
    """`genreflow index` in-process (local validation: no Ray); stdout and stderr apart."""
    result = CliRunner().invoke(main, ["index", "--data-dir", str(data_dir), "--workers", "1"])
    assert result.exit_code == 0, result.output
    return result


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The index summary table (up to its first blank line) as {genre: counts}."""
    lines = stdout.split("\n\n")[0].splitlines()
    assert lines[0].split() == ["genre", "valid", "invalid", "duplicates", "train", "val"]
    return {line.rsplit(None, 5)[0]: line.rsplit(None, 5)[1:] for line in lines[2:]}


def test_display_name_escapes_only_what_breaks_or_spoofs_a_line():
    from genreflow.core.console import display_name

    for ordinary in ("rock", "café au lait", "音楽 ジャズ", "می‌خواهم", "a  b", "x\\ny (a backslash)", "👨‍👩‍👧"):
        assert display_name(ordinary) == ordinary
    assert display_name("new\nline\ttab\rcr") == "new\\nline\\ttab\\rcr"
    assert display_name("evil\u202egnp.wav") == "evil\\u202egnp.wav"
    assert display_name("\x1b[31mred\x7f\u2028\u2066") == "\\x1b[31mred\\x7f\\u2028\\u2066"
    assert display_name("bad\udcffbyte.wav") == "bad\\xffbyte.wav"  # surrogateescape, as printable_path shows it


def test_index_table_and_warnings_show_control_characters_escaped(data_dir):
    raw = data_dir / "raw"
    write_clip(raw / "rock" / "a.wav", seed=1)
    write_clip(raw / "rock" / "b.wav", seed=2)
    write_clip(raw / "new\nline" / "x\ty.wav", seed=3)
    write_clip(raw / "new\nline" / "z.wav", seed=4)
    write_clip(raw / "café 音楽" / "e.wav", seed=5)
    write_clip(raw / "café 音楽" / "f.wav", seed=6)
    (raw / "em\u202ety").mkdir()  # a genre folder with no audio: named in a warning

    result = index_cli(data_dir)

    rows = table_rows(result.stdout)
    assert set(rows) == {"café 音楽", "new\\nline", "rock", "em\\u202ety", "total"}
    assert rows["new\\nline"][0] == "2"
    for text in (result.stdout, result.stderr):
        assert "\u202e" not in text and "\t" not in text
        assert not any(line.startswith("line") for line in text.splitlines())
    assert f"warning: genre folder {raw}/em\\u202ety holds no audio files" in result.stderr


def test_whitespace_only_genre_folders_are_left_out_with_a_named_warning(data_dir):
    raw = data_dir / "raw"
    write_clip(raw / "rock" / "a.wav", seed=1)
    write_clip(raw / "rock" / "b.wav", seed=2)
    write_clip(raw / "   " / "s.wav", seed=3)
    write_clip(raw / " \t" / "t.wav", seed=4)

    result = index_cli(data_dir)

    assert set(table_rows(result.stdout)) == {"rock", "total"}
    assert (f"warning: skipped genre folder '   ' in {raw}: its name is only whitespace and would print as a "
            "blank; rename it to use it as a genre.") in result.stderr.splitlines()
    assert f"warning: skipped genre folder ' \\t' in {raw}:" in result.stderr
    index = json.loads((data_dir / "processed" / "dataset_index.json").read_text())
    assert index["params"]["genre_folders"] == ["rock"]
    assert [f["relpath"] for f in index["files"]] == ["rock/a.wav", "rock/b.wav"]


def test_a_hidden_genre_folder_with_audio_is_named_once_and_git_stays_silent(data_dir):
    raw = data_dir / "raw"
    write_clip(raw / "rock" / "a.wav", seed=1)
    write_clip(raw / "rock" / "b.wav", seed=2)
    write_clip(raw / "..." / "h1.wav", seed=3)
    write_clip(raw / "..." / "deep" / "h2.flac", seed=4)
    (raw / ".git" / "objects").mkdir(parents=True)
    (raw / ".git" / "objects" / "ab12").write_bytes(b"blob")
    write_clip(raw / ".Trashes" / "._x.wav", seed=5)  # AppleDouble-style hidden audio: not worth a note

    result = index_cli(data_dir)

    hidden = [line for line in result.stderr.splitlines() if "hidden folder" in line]
    assert hidden == [f"warning: skipped hidden folder {raw}/...: it holds audio files (e.g. {raw}/.../h1.wav), "
                      "but folders whose names start with '.' are left out on purpose; rename it to use it as a "
                      "genre."]
    assert ".git" not in result.output and ".Trashes" not in result.output


def test_remote_listings_get_the_same_notes(tmp_path):
    raw = tmp_path / "raw"
    write_clip(raw / "rock" / "a.wav", seed=1)
    write_clip(raw / "..." / "h.wav", seed=2)
    write_clip(raw / "..." / "more.wav", seed=3)
    write_clip(raw / "  " / "s.wav", seed=4)
    (raw / ".git").mkdir()
    (raw / ".git" / "HEAD").write_text("ref")
    remote = Location(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "raw")  # not local

    found = discover(remote)

    assert found.genres == ["rock"] and found.candidates == [("rock/a.wav", "rock")]
    assert [n.split(":")[0] for n in found.notes] == ["skipped genre folder '  ' in raw",
                                                       "skipped hidden folder raw/..."]


def test_the_invalid_and_ignored_lists_are_capped_at_20_lines(data_dir):
    from genreflow.cli.outputs import echo_index_files, index_file_lines

    raw = data_dir / "raw"
    write_clip(raw / "rock" / "a.wav", seed=1)
    write_clip(raw / "rock" / "b.wav", seed=2)
    for i in range(30):
        (raw / "rock" / f"empty_{i:02d}.wav").write_bytes(b"")
        (raw / "rock" / f"cover_{i:02d}.jpg").write_bytes(b"\xff\xd8\xff")
    (raw / "rock" / "zz\n.wav").write_bytes(b"")
    index = run_index(str(data_dir), 1, SplitConfig())["index"]
    index_json = data_dir / "processed" / "dataset_index.json"

    lines = index_file_lines(index, index_json)

    assert lines[0] == "\n31 invalid file(s) skipped:"
    assert lines[1:21] == [f"  rock/empty_{i:02d}.wav: empty file (0 bytes)" for i in range(20)]
    assert lines[21] == f"  ... and 11 more invalid files: see 'invalid' in {index_json}"
    assert lines[22].startswith("30 ignored file(s)")
    assert lines[23:43] == [f"  rock/cover_{i:02d}.jpg" for i in range(20)]
    assert lines[43:] == [f"  ... and 10 more ignored files: see 'ignored' in {index_json}"]
    assert index_file_lines(index, index_json, limit=40)[31] == "  rock/zz\\n.wav: empty file (0 bytes)"

    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # what run_index_command prints below its table
        echo_index_files(index, index_json)
    assert out.getvalue().splitlines() == "\n".join(lines).splitlines()


def test_the_prediction_table_escapes_file_names_and_errors():
    from genreflow.cli.outputs import format_predictions
    from genreflow.stages.predict import Prediction

    results = [Prediction("songs/a\nb.wav", "rock", 0.9, {"rock": 0.9, "jazz": 0.1}),
               Prediction("songs/evil\u202egnp.wav", "jazz", 0.8, {"rock": 0.2, "jazz": 0.8}),
               Prediction("songs/t\tab.wav", error="cannot read songs/t\tab.wav"),
               Prediction("songs/café 音楽.wav", "rock", 0.7, {"rock": 0.7, "jazz": 0.3})]

    lines = format_predictions(results, ["jazz", "rock"], "table").splitlines()

    assert len(lines) == 2 + len(results)
    assert lines[2].split() == ["songs/a\\nb.wav", "rock", "0.900"]
    assert lines[3].split() == ["songs/evil\\u202egnp.wav", "jazz", "0.800"]
    assert lines[4].split() == ["songs/t\\tab.wav", "-", "-", "cannot", "read", "songs/t\\tab.wav"]
    assert lines[5].startswith("songs/café 音楽.wav ")
