"""bf16 inference primitives: CPU flag parsing, precision resolution, the fp32/bf16 agreement
of VGGish embeddings, and the proof that several clips in one call equal per-clip calls.

The bf16 switch is a process-global TensorFlow option, so fp32 and bf16 embeddings are each
computed in a subprocess of their own (`python -c`), never both in the pytest process.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from genreflow.features import vggish_tf as vggish
from genreflow.core.host import bf16_flags, resolve_precision
from genreflow.errors import ConfigError
from genreflow.data.synth import chord, noise, tone, write_audio

SR = vggish.SAMPLE_RATE
ROOT = Path(vggish.__file__).resolve().parents[1]

# Abridged /proc/cpuinfo texts (two logical CPUs each where it matters), real flag names.
SAPPHIRE_RAPIDS = textwrap.dedent("""\
    processor\t: 0
    vendor_id\t: GenuineIntel
    model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
    flags\t\t: fpu vme tsc msr avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8
    vmx flags\t: vnmi preemption_timer

    processor\t: 1
    model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
    flags\t\t: fpu vme tsc msr avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8
    """)
ZEN4 = textwrap.dedent("""\
    processor\t: 0
    vendor_id\t: AuthenticAMD
    model name\t: AMD EPYC 9R14 96-Core Processor
    flags\t\t: fpu vme de pse tsc msr avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512vbmi avx512_vnni
    """)
ZEN2 = textwrap.dedent("""\
    processor\t: 0
    vendor_id\t: AuthenticAMD
    model name\t: AMD EPYC 7R32
    flags\t\t: fpu vme de pse tsc msr sse4_2 avx f16c avx2 sha_ni clzero
    """)
# Flag names that merely contain the words must not count.
LOOKALIKES = "processor\t: 0\nflags\t\t: avx512_bf16x amx_bf16_lite xamx_bf16\nvmx flags\t: amx_bf16\n"


@pytest.mark.parametrize(
    ("text", "flags", "auto"),
    [
        (SAPPHIRE_RAPIDS, {"amx_bf16", "avx512_bf16"}, "bf16"),
        (ZEN4, {"avx512_bf16"}, "bf16"),
        (ZEN2, set(), "fp32"),
        ("", set(), "fp32"),
        (LOOKALIKES, set(), "fp32"),
    ],
    ids=["sapphire-rapids", "zen4", "epyc-zen2", "empty", "lookalikes"],
)
def test_bf16_flags_and_auto(text: str, flags: set[str], auto: str) -> None:
    assert bf16_flags(text) == flags
    assert resolve_precision("auto", bf16_flags(text)) == auto


@pytest.mark.parametrize("requested", ["fp32", "bf16"])
def test_explicit_precision_passes_through_whatever_the_cpu(requested: str) -> None:
    assert resolve_precision(requested, set()) == requested
    assert resolve_precision(requested, {"amx_bf16"}) == requested


@pytest.mark.parametrize("bad", ["fp16", "BF16", "", "float32", None, 16])
def test_invalid_precision_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="precision=.* is not valid; use one of auto, fp32, bf16"):
        resolve_precision(bad, set())  # type: ignore[arg-type]


def test_auto_follows_this_machines_cpu_flags() -> None:
    """auto is bf16 exactly when /proc/cpuinfo lists a bf16 flag (read here independently)."""
    from pathlib import Path

    words = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    expected = bool(words & {"amx_bf16", "avx512_bf16"})
    assert bf16_flags() == words & {"amx_bf16", "avx512_bf16"}
    assert resolve_precision("auto") == ("bf16" if expected else "fp32")


# --- with TensorFlow ----------------------------------------------------------------------------
def _clips(folder: Path) -> list[Path]:
    """Real audio files at 16 kHz (tone, chord, noise; 0.5 s to 5 s), written with soundfile."""
    specs = [
        ("tone.wav", tone(440.0, 3.0, SR)),
        ("chord.flac", chord([220.0, 277.2, 329.6], 5.0, SR)),
        ("noise.wav", noise(2.2, SR, amp=0.2, seed=7)),
        ("short_tone.wav", tone(1000.0, 0.5, SR)),
    ]
    return [write_audio(folder / name, samples, SR) for name, samples in specs]


_EMBED_CODE = """
import sys
import numpy as np
import soundfile as sf
from genreflow.features import vggish_tf as vggish
model_dir, precision, out_dir, *files = sys.argv[1:]
model = vggish.load_model(model_dir, threads=2, precision=precision)
for i, path in enumerate(files):
    samples, _ = sf.read(path, dtype="float32")
    emb, _ = vggish.embed_waveform(model, samples)
    np.save(f"{out_dir}/{i}.npy", emb)
"""


def _embed_in_subprocess(model: str, precision: str, files: list[Path], out: Path) -> list[np.ndarray]:
    out.mkdir(parents=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", _EMBED_CODE, model, precision, str(out), *map(str, files)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [np.load(out / f"{i}.npy") for i in range(len(files))]


@functools.lru_cache(maxsize=1)
def _onednn_enabled() -> bool:
    """Asked in a subprocess: whether TensorFlow's oneDNN passes are on (bf16 needs them)."""
    code = ("from genreflow.features.tf_runtime import onednn_enabled as _onednn_enabled, tf_module as _tf\n"
            "print('ONEDNN', _onednn_enabled(_tf()))")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                         check=True, timeout=300)
    return "ONEDNN True" in out.stdout


NO_ONEDNN = ("TensorFlow's oneDNN passes are off here (TF_ENABLE_ONEDNN_OPTS=0 or a build without oneDNN), "
             "so the bf16 rewrite cannot apply and load_model refuses bf16")


@pytest.fixture(scope="module")
def fp32_and_bf16(standin_model: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list]:
    if not _onednn_enabled():
        pytest.skip(NO_ONEDNN)
    folder = tmp_path_factory.mktemp("bf16")
    files = _clips(folder / "clips")
    return (_embed_in_subprocess(standin_model, "fp32", files, folder / "fp32"),
            _embed_in_subprocess(standin_model, "bf16", files, folder / "bf16"))


@pytest.mark.slow
def test_bf16_agrees_with_fp32_per_row(fp32_and_bf16: tuple[list, list]) -> None:
    fp32, bf16 = fp32_and_bf16
    for a, b in zip(fp32, bf16):
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32
        cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cosine.min() >= 0.999, cosine


@pytest.mark.slow
def test_bf16_rewrite_really_applies(fp32_and_bf16: tuple[list, list]) -> None:
    """Bit-identical outputs would mean the option was silently ignored (bf16 labels on fp32 rows).
    With oneDNN on, TensorFlow applies the rewrite whatever the CPU: native bf16 (AMX, AVX512-BF16),
    emulated on AVX-512 without them, Eigen fallback below that (slow, still bf16)."""
    fp32, bf16 = fp32_and_bf16
    assert not all(np.array_equal(a, b) for a, b in zip(fp32, bf16))


@pytest.mark.slow
def test_bf16_without_onednn_is_refused(standin_model: str) -> None:
    code = ("from genreflow.features import vggish_tf as vggish\nimport sys\n"
            "try:\n    vggish.load_model(sys.argv[1], precision='bf16')\n"
            "except vggish.ModelLoadError as exc:\n    print('REFUSED', exc)\n")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code, standin_model], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert "REFUSED precision bf16 needs TensorFlow's oneDNN optimizations" in out.stdout, out.stderr[-2000:]


@pytest.fixture(scope="module")
def model(standin_model: str):
    return vggish.load_model(standin_model, threads=2)


@pytest.mark.slow
def test_load_model_rejects_unresolved_or_unknown_precision(standin_model: str) -> None:
    for bad in ("auto", "fp16"):
        with pytest.raises(ConfigError, match="precision="):
            vggish.load_model(standin_model, precision=bad)


@pytest.mark.slow
def test_embed_batch_equals_one_call_per_clip(model) -> None:
    """The proof: clips of different lengths (below 0.975 s, at and around example boundaries,
    30 s) in one call give the rows and valid counts of separate calls."""
    rng = np.random.default_rng(5)
    lengths = [1, 8000, 15599, 15600, 15601, 30959, 30960, 31000, SR * 3 + 77, SR * 30]
    waves = [(0.3 * rng.standard_normal(n)).astype(np.float32) for n in lengths]
    waves[3] = tone(330.0, 15600 / SR, SR)
    waves[-1] = chord([110.0, 165.0], 30.0, SR) + noise(30.0, SR, amp=0.01, seed=2)
    n_valid = [None, 4000, None, 15600, 100, None, 30000, None, SR, SR * 5]
    batched = vggish.embed_batch(model, waves, n_valid)
    assert len(batched) == len(waves)
    for wav, n, (emb, valid) in zip(waves, n_valid, batched):
        ref, ref_valid = vggish.embed_waveform(model, wav, n)
        assert emb.shape == ref.shape == (vggish.expected_frames(wav.size), vggish.EMBEDDING_DIM)
        assert emb.dtype == np.float32 and valid == ref_valid
        np.testing.assert_allclose(emb, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_embed_batch_edge_cases(model) -> None:
    assert vggish.embed_batch(model, [], []) == []
    one = tone(440.0, 2.5, SR)
    (emb, valid), = vggish.embed_batch(model, [one], [None])
    ref, ref_valid = vggish.embed_waveform(model, one)
    np.testing.assert_allclose(emb, ref, rtol=1e-4, atol=1e-4)
    assert valid == ref_valid
    with pytest.raises(ValueError, match="2 waveforms but 1 n_valid"):
        vggish.embed_batch(model, [one, one], [None])
    with pytest.raises(ValueError, match="non-finite"):
        vggish.embed_batch(model, [one, np.array([0.0, np.nan], np.float32)], [None, None])


@pytest.mark.slow
def test_each_model_keeps_its_precision_in_one_process(standin_model: str) -> None:
    """TensorFlow reads the option at call time: a later fp32 load must not turn a bf16 model
    into fp32 (nor the reverse), so VggishModel re-asserts its precision per call."""
    if not _onednn_enabled():
        pytest.skip(NO_ONEDNN)
    code = textwrap.dedent("""
        import json, sys
        import numpy as np
        from genreflow.features import vggish_tf as vggish
        wav = (0.3 * np.random.default_rng(0).standard_normal(16000 * 4)).astype(np.float32)
        bf = vggish.load_model(sys.argv[1], precision="bf16")
        fp = vggish.load_model(sys.argv[1], precision="fp32")
        a, b, a2, b2 = fp(wav).numpy(), bf(wav).numpy(), fp(wav).numpy(), bf(wav).numpy()
        print(json.dumps({"fp_stable": bool(np.array_equal(a, a2)), "bf_stable": bool(np.array_equal(b, b2)),
                          "differ": not np.array_equal(a, b), "precisions": [fp.precision, bf.precision]}))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code, standin_model], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"fp_stable": True, "bf_stable": True, "differ": True, "precisions": ["fp32", "bf16"]}
