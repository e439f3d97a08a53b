"""Issue 14: segment-level pooling (frame windows, time-aligned windows over several kinds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genreflow.errors import ConfigError, DataError
from genreflow.model.pooling import pool_frames
from genreflow.model.segments import (KindFrames, combine_kinds, frame_range, pool_ranges, pool_segments, pool_times,
                                pool_window, segment_bounds, segment_times, shared_seconds, stack_clips,
                                window_frames)
from genreflow.data.synth import genre_clip


def _frames(t: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, d)).astype(np.float32)


def test_window_frames_rounds_and_is_at_least_one():
    assert window_frames(1.5, 512 / 22050) == 65  # 64.6 frames
    assert window_frames(0.1, 0.96) == 1
    assert window_frames(1.92, 0.96) == 2
    assert window_frames(np.float32(1.5), 512 / 22050) == 65  # numpy scalars from arrays or TOML readers
    for bad in (0, -1.0, math.nan, math.inf, None, True):
        with pytest.raises(ConfigError, match="segment_s="):
            window_frames(bad, 0.96)
    with pytest.raises(ConfigError, match="frame_seconds=0"):
        window_frames(1.0, 0)


@pytest.mark.parametrize("window", [1, 2, 3, 4, 7, 10, 16])
def test_segment_bounds_cover_the_valid_frames(window):
    for valid in range(1, 60):
        bounds = segment_bounds(valid, window)
        covered = np.zeros(valid + 5, dtype=int)
        for f0, f1 in bounds:
            covered[f0:f1] += 1
        assert (covered[:valid] >= 1).all() and (covered[valid:] == 0).all(), (valid, bounds)
        assert bounds[0][0] == 0 and bounds[-1][1] == valid
        assert {f1 - f0 for f0, f1 in bounds} == {min(window, valid)}  # every window has one length
        starts = [f0 for f0, _ in bounds]
        hop = max(1, window // 2)
        assert all(b - a == hop for a, b in zip(starts[:-2], starts[1:-1]))  # 50 % overlap
        assert all(0 < b - a <= hop for a, b in zip(starts[:-1], starts[1:]))  # the end-aligned one overlaps more
        if valid <= window:
            assert bounds == [(0, valid)]


def test_segment_bounds_examples_and_errors():
    assert segment_bounds(10, 4) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert segment_bounds(11, 4) == [(0, 4), (2, 6), (4, 8), (6, 10), (7, 11)]
    assert segment_bounds(3, 4) == [(0, 3)]
    with pytest.raises(ConfigError, match="window=0"):
        segment_bounds(10, 0)


@pytest.mark.parametrize("valid", [1, 17, 37, 50])
def test_whole_clip_segment_equals_pool_frames(valid):
    frames = _frames(50, 6)
    frames[valid:] = 1e3  # padding must not count
    expected = pool_frames(frames[None], np.array([valid]))[0]
    for window in (valid, 50, 500):
        got = pool_segments(frames, valid, window)
        assert got.shape == (1, 12)
        np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-6)
    other = _frames(9, 3, seed=1)  # a second kind at another frame rate, whole clip too
    both = combine_kinds([KindFrames(frames, valid, 0.02), KindFrames(other, 4, 0.5)], None)
    np.testing.assert_allclose(both[0], np.concatenate([expected, pool_frames(other[None], np.array([4]))[0]]),
                               rtol=1e-5, atol=1e-6)


def test_each_segment_is_pool_frames_of_its_window():
    frames = _frames(40, 5, seed=2)
    frames[33:] = -7.0
    segments = pool_segments(frames, 33, 8)
    bounds = segment_bounds(33, 8)
    assert segments.shape == (len(bounds), 10) and segments.dtype == np.float32
    for row, (f0, f1) in zip(segments, bounds):
        np.testing.assert_allclose(row, pool_frames(frames[None, f0:f1], np.array([f1 - f0]))[0], rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(row, pool_window(frames, f0, f1), rtol=1e-6, atol=1e-7)
    mixed = [(0, 3), (2, 9), (30, 33)]  # unequal lengths take the loop path
    np.testing.assert_allclose(pool_ranges(frames, mixed), np.stack([pool_window(frames, *r) for r in mixed]))


def test_segment_times_rule():
    assert segment_times(3.0, 1.0) == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5), (2.0, 3.0)]
    times = segment_times(3.2, 1.0)
    assert times[-1] == pytest.approx((2.2, 3.2)) and times[-2] == pytest.approx((2.0, 3.0)) and len(times) == 6
    assert segment_times(0.7, 1.0) == [(0.0, 0.7)]
    assert segment_times(30.0, None) == [(0.0, 30.0)]
    with pytest.raises(ConfigError, match="segment_s=-1"):
        segment_times(3.0, -1)
    with pytest.raises(DataError, match="valid_seconds=0"):
        segment_times(0, 1.0)


@pytest.mark.parametrize("window", [2, 4, 10])
def test_time_rule_matches_frame_rule_for_one_kind(window):
    fs = 512 / 22050
    for valid in (1, window - 1, window, window + 1, 3 * window + 1, 57):
        frames = _frames(60, 4, seed=valid)
        got = combine_kinds([KindFrames(frames, valid, fs)], window * fs)
        np.testing.assert_allclose(got, pool_segments(frames, valid, window), rtol=1e-6, atol=1e-7)


def test_combine_kinds_aligns_kinds_in_time_not_by_index():
    fine = np.arange(60, dtype=np.float32)[:, None]  # frame value = frame index, 0.05 s frames: 3.0 s
    coarse = np.arange(4, dtype=np.float32)[:, None]  # 0.96 s frames: 3.84 s (last frame starts at 2.88 s)
    out = combine_kinds([KindFrames(fine, 60, 0.05), KindFrames(coarse, 4, 0.96)], 1.5)
    # shared span min(3.0, 3.84) = 3.0 s -> windows [0, 1.5), [0.75, 2.25), [1.5, 3.0)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out[:, 0], [np.mean(range(0, 30)), np.mean(range(15, 45)), np.mean(range(30, 60))])
    # coarse frames starting in each window: {0, 1}, {1, 2}, {2} plus the rest of the clip: {2, 3}
    np.testing.assert_allclose(out[:, 2], [0.5, 1.5, 2.5])
    np.testing.assert_allclose(out[:, 3], [0.5, 0.5, 0.5])  # population std of two consecutive frames


def test_kinds_pooled_one_at_a_time_on_shared_times_match_combine_kinds():
    mfcc, vggish = _frames(140, 4, seed=5), _frames(4, 3, seed=6)
    kinds = [KindFrames(mfcc, 130, 512 / 22050), KindFrames(vggish, 4, 0.96)]
    times = segment_times(shared_seconds([(130, 512 / 22050), (4, 0.96)]), 1.5)
    assert shared_seconds([(130, 512 / 22050), (4, 0.96)]) == pytest.approx(130 * 512 / 22050)
    one_by_one = np.concatenate([pool_times(k.frames, k.valid, k.frame_seconds, times) for k in kinds], axis=1)
    np.testing.assert_array_equal(one_by_one, combine_kinds(kinds, 1.5))
    by_duration = segment_times(3.0, 1.5)  # e.g. the clip's decoded duration from the index
    assert [len(pool_times(k.frames, k.valid, k.frame_seconds, by_duration)) for k in kinds] == [3, 3]
    np.testing.assert_allclose(pool_times(mfcc, 130, 512 / 22050, by_duration)[-1],
                               pool_window(mfcc, 65, 130), rtol=1e-6)  # [1.5 s, end): frames 65..129


def test_windows_narrower_than_a_frame_take_the_frame_they_fall_in():
    assert frame_range(0.25, 0.75, 0.96, 4) == (0, 1)  # no frame starts inside: the one covering 0.5 s
    assert frame_range(0.9, 1.4, 0.96, 4) == (1, 2)
    assert frame_range(5.0, 6.0, 0.96, 4) == (3, 4)  # clamped to the valid frames
    coarse = np.arange(4, dtype=np.float32)[:, None]
    out = combine_kinds([KindFrames(coarse, 4, 0.96)], 0.5)
    # 15 windows of 0.5 s every 0.25 s over 3.84 s: each holds one frame, the one starting in it or under its middle
    assert out[:, 0].tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3]
    assert (out[:, 1] == 0).all()


def test_stack_clips_and_frame_checks():
    X, clip_ids = stack_clips([np.ones((2, 3)), np.zeros((1, 3)), np.ones((3, 3))])
    assert X.shape == (6, 3) and clip_ids.tolist() == [0, 0, 1, 2, 2, 2]
    with pytest.raises(DataError, match="time-major"):
        pool_segments(np.zeros(5), 5, 2)


def test_segments_of_real_audio_mfcc():
    """Synth audio -> librosa MFCC (the store's layout, transposed) -> segments."""
    import librosa

    sr, hop, seconds = 22050, 512, 3.0
    wave = np.concatenate([genre_clip("techno", seconds, sr, seed=4), np.zeros(sr, np.float32)])  # 1 s padding
    frames = librosa.feature.mfcc(y=wave, sr=sr, n_mfcc=13, hop_length=hop).T.astype(np.float32)
    valid = math.ceil(int(seconds * sr) / hop)
    assert frames.shape[0] > valid
    window = window_frames(1.0, hop / sr)
    segments = pool_segments(frames, valid, window)
    assert segments.shape == (len(segment_bounds(valid, window)), 26) and len(segments) >= 5
    assert np.isfinite(segments).all() and segments[:, 13:].min() >= 0
    np.testing.assert_allclose(pool_segments(frames, valid, 10 * window)[0],
                               pool_frames(frames[None], np.array([valid]))[0], rtol=1e-5, atol=1e-4)
    timed = combine_kinds([KindFrames(frames, valid, hop / sr)], 1.0)
    assert len(timed) == len(segment_times(valid * hop / sr, 1.0)) and timed.shape[1] == 26
