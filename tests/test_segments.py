"""genreflow.model.pooling: one mean+std kernel, one time-window rule, kinds aligned in time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genreflow.errors import ConfigError, DataError
from genreflow.model.pooling import (KindFrames, combine_kinds, frame_range, mean_std, pool_frames, pool_ranges,
                                     pool_times, segment_times, shared_seconds)
from genreflow.data.synth import genre_clip


def _frames(t: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, d)).astype(np.float32)


def _oracle(frames: np.ndarray, f0: int, f1: int) -> np.ndarray:
    """mean + population std of frames[f0:f1], written out with numpy (not genreflow)."""
    window = frames[f0:f1].astype(np.float64)
    return np.concatenate([window.mean(axis=0), window.std(axis=0)])


def test_mean_std_is_mean_and_population_std_of_the_counted_frames():
    windows = _frames(30, 4, seed=9).reshape(3, 10, 4)
    windows[1, 6:] = 1e6  # beyond its count: must not count
    got = mean_std(windows, np.array([10, 6, 1]))
    assert got.shape == (3, 8) and got.dtype == np.float32
    for row, (i, n) in zip(got, [(0, 10), (1, 6), (2, 1)]):
        np.testing.assert_allclose(row, _oracle(windows[i], 0, n), rtol=1e-6, atol=1e-6)


def test_pool_frames_clamps_a_damaged_valid_count():
    frames = _frames(8, 3)[None]
    np.testing.assert_array_equal(pool_frames(frames, np.array([2**31 - 1])), pool_frames(frames, np.array([8])))
    np.testing.assert_array_equal(pool_frames(frames, np.array([-5])), pool_frames(frames, np.array([1])))


@pytest.mark.parametrize("valid", [1, 17, 37, 50])
def test_whole_clip_segment_equals_pool_frames(valid):
    frames = _frames(50, 6)
    frames[valid:] = 1e3  # padding must not count
    expected = pool_frames(frames[None], np.array([valid]))[0]
    for seconds in (valid * 0.02, 1.0, 10.0):  # one window as long as the clip, or longer
        got = combine_kinds([KindFrames(frames, valid, 0.02)], seconds)
        assert got.shape == (1, 12)
        np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-6)
    whole = combine_kinds([KindFrames(frames, valid, 0.02)], None)
    np.testing.assert_array_equal(whole[0], expected)  # whole clip: the very same call as training
    other = _frames(9, 3, seed=1)  # a second kind at another frame rate, whole clip too
    both = combine_kinds([KindFrames(frames, valid, 0.02), KindFrames(other, 4, 0.5)], None)
    np.testing.assert_allclose(both[0], np.concatenate([expected, pool_frames(other[None], np.array([4]))[0]]),
                               rtol=1e-5, atol=1e-6)


def test_each_segment_is_mean_std_of_its_frames():
    frames = _frames(40, 5, seed=2)
    ranges = [(0, 8), (4, 12), (30, 33), (0, 3), (2, 9)]  # equal and unequal lengths in one call
    got = pool_ranges(frames, ranges)
    assert got.shape == (len(ranges), 10) and got.dtype == np.float32
    for row, (f0, f1) in zip(got, ranges):
        np.testing.assert_allclose(row, _oracle(frames, f0, f1), rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="do not fit"):
        pool_ranges(frames, [(35, 45)])


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
def test_windows_of_one_kind_start_every_half_window_and_end_flush(window):
    fs = 512 / 22050
    for valid in (1, window - 1, window, window + 1, 3 * window + 1, 57):
        frames = _frames(60, 4, seed=valid)
        got = combine_kinds([KindFrames(frames, valid, fs)], window * fs)
        if valid <= window:
            bounds = [(0, valid)]
        else:
            hop = max(1, window // 2)
            bounds = [(s, s + window) for s in range(0, valid - window + 1, hop)]
            if bounds[-1][1] < valid:
                bounds.append((valid - window, valid))
        assert len(got) == len(bounds), (valid, window)
        for row, (f0, f1) in zip(got, bounds):
            np.testing.assert_allclose(row, _oracle(frames, f0, f1), rtol=1e-5, atol=1e-6)


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
                               _oracle(mfcc, 65, 130), rtol=1e-5, atol=1e-6)  # [1.5 s, end): frames 65..129


def test_windows_narrower_than_a_frame_take_the_frame_they_fall_in():
    assert frame_range(0.25, 0.75, 0.96, 4) == (0, 1)  # no frame starts inside: the one covering 0.5 s
    assert frame_range(0.9, 1.4, 0.96, 4) == (1, 2)
    assert frame_range(5.0, 6.0, 0.96, 4) == (3, 4)  # clamped to the valid frames
    coarse = np.arange(4, dtype=np.float32)[:, None]
    out = combine_kinds([KindFrames(coarse, 4, 0.96)], 0.5)
    # 15 windows of 0.5 s every 0.25 s over 3.84 s: each holds one frame, the one starting in it or under its middle
    assert out[:, 0].tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3]
    assert (out[:, 1] == 0).all()


def test_frames_must_be_time_major_2d():
    with pytest.raises(DataError, match="time-major"):
        combine_kinds([KindFrames(np.zeros(5), 5, 0.1)], 1.0)


def test_segments_of_real_audio_mfcc():
    """Synth audio -> librosa MFCC (the store's layout, transposed) -> segments."""
    import librosa

    sr, hop, seconds = 22050, 512, 3.0
    wave = np.concatenate([genre_clip("techno", seconds, sr, seed=4), np.zeros(sr, np.float32)])  # 1 s padding
    frames = librosa.feature.mfcc(y=wave, sr=sr, n_mfcc=13, hop_length=hop).T.astype(np.float32)
    valid = math.ceil(int(seconds * sr) / hop)
    assert frames.shape[0] > valid
    timed = combine_kinds([KindFrames(frames, valid, hop / sr)], 1.0)
    assert len(timed) == len(segment_times(valid * hop / sr, 1.0)) >= 5 and timed.shape[1] == 26
    assert np.isfinite(timed).all() and timed[:, 13:].min() >= 0
    np.testing.assert_allclose(combine_kinds([KindFrames(frames, valid, hop / sr)], 10.0)[0],
                               pool_frames(frames[None], np.array([valid]))[0], rtol=1e-5, atol=1e-4)
