"""Model actors on GPUs: the plan follows the GPUs, and the wiring works with Ray's logical GPU
resources on a CPU-only machine (Ray schedules the actor on the 'GPU'; TensorFlow then finds no
device and runs on the CPU)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from genreflow.stages.extract import gpu_plan
from test_musicnn_net import needs_musicnn


def test_actor_count_follows_the_gpus():
    assert gpu_plan(0, 1.0) is None  # a CPU-only cluster: CPU actors
    assert gpu_plan(4, 0) is None  # the user keeps the models on CPUs
    assert gpu_plan(2, 1.0) == (2, 1.0)
    assert gpu_plan(1, 0.5) == (2, 0.5)  # two actors share one GPU
    assert gpu_plan(3, 2.0) == (1, 2.0)


@pytest.mark.slow
@needs_musicnn
def test_a_logical_gpu_gets_the_model_actor(tmp_path):
    script = textwrap.dedent(f"""
        import ray
        from genreflow.config import load_config
        from genreflow.cli.commands import run_features_command, run_index_command
        from genreflow.data.synth import SYNTH_GENRES, genre_clip, write_audio

        for g, genre in enumerate(SYNTH_GENRES[:2]):
            for i in range(3):
                write_audio("{tmp_path}/raw/" + genre + f"/c{{i}}.wav", genre_clip(genre, 3.0, 16000, seed=i), 16000)
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False)
        config = load_config(None, {{"data_dir": "{tmp_path}", "workers": 2, "audio.duration_s": 3.0,
                                     "musicnn.precision": "fp32"}})
        run_index_command(config)
        (report,) = run_features_command(config, ["musicnn"])
        print("DEVICES", sorted(report.devices), report.computed)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DEVICES ['GPU 0'] 6" in done.stdout, done.stdout[-2000:]
    assert "on GPU 0" in done.stdout  # the report line says where the model ran
