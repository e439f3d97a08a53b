"""Cluster use: cluster.yaml against Ray's own launcher validation, and jobs/pipeline.py then
jobs/train.py submitted with `ray job submit` to a real local Ray head (its own ports, temp dir
and auth token, stopped even when the test fails)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from pipeline_support import make_tree, write_toml

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def load_cluster_yaml() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_schema():
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(load_cluster_yaml(), schema)


def test_cluster_yaml_passes_ray_up_validation():
    """What `ray up` checks before it calls the cloud (Ray 2.60 has no --dry-run): the config
    merged with the provider's defaults, then Ray's schema and cross-field checks."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(load_cluster_yaml())
    validate_config(config)
    assert config["provider"]["type"] == "aws"
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert workers and all(t["max_workers"] > t.get("min_workers", 0) for t in workers)  # autoscaling


def test_cluster_yaml_installs_this_checkout_without_data_or_git():
    config = load_cluster_yaml()
    assert config["file_mounts"] == {"~/genreflow": "."}
    assert any("pip install" in c and "~/genreflow" in c for c in config["setup_commands"])
    excluded = " ".join(config["rsync_exclude"])
    assert ".git" in excluded and "data/" in excluded
    assert config["docker"]["image"].startswith("rayproject/ray:")


def test_runtime_env_keeps_data_and_git_out_of_the_upload():
    excludes = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())["excludes"]
    assert "/.git" in excludes and "/data/" in excludes


def test_job_entrypoints_are_the_cli():
    """jobs/*.py hold no logic: their --help is the CLI's `run` / `train` help."""
    for script, word in (("pipeline.py", "--no-train"), ("train.py", "Train and evaluate")):
        out = subprocess.run([sys.executable, str(REPO / "jobs" / script), "--help"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert word in out and "--data-dir" in out


# --- a real Ray head and `ray job submit` ----------------------------------------------------


def free_ports(n: int) -> list[int]:
    """Distinct free loopback ports (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


class RayHead:
    """`ray start --head --block` in its own process group, temp dir and auth token.

    Never `ray stop`: that kills every Ray on the machine. Stopping sends SIGTERM to this
    head's `ray start` (it drains and stops what it started), then SIGKILLs its process group.
    """

    def __init__(self, root: Path) -> None:
        gcs, self.dashboard_port, client, agent = free_ports(4)
        self.temp_dir = root
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0",
                        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # a test head has nothing to drain
                        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        self.log = root.with_suffix(".log")
        command = [RAY, "start", "--head", "--block", "--num-cpus", "2", "--port", str(gcs),
                   "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                   "--dashboard-port", str(self.dashboard_port), "--ray-client-server-port", str(client),
                   "--dashboard-agent-listen-port", str(agent), "--temp-dir", str(root),
                   "--object-store-memory", str(300 * 2**20), "--disable-usage-stats"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until the job API answers a request that carries this head's token."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                request = urllib.request.Request(f"{self.address}/api/jobs/",
                                                 headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"})
                with urllib.request.urlopen(request, timeout=5):
                    return
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"the Ray head's job API did not answer in {timeout}s:\n{self.log.read_text()}")

    def ray(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
        return subprocess.run([RAY, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def submit(self, *entrypoint: str, timeout: float = 180.0, env: dict | None = None
               ) -> tuple[str, subprocess.CompletedProcess]:
        """`ray job submit` this checkout as the working dir; waits for the job to end."""
        submission_id = f"genreflow-test-{secrets.token_hex(4)}"
        args = ["job", "submit", "--address", self.address, "--submission-id", submission_id, "--working-dir",
                str(REPO), "--runtime-env", str(REPO / "jobs" / "runtime_env.yaml"), "--", *entrypoint]
        if env is None:
            return submission_id, self.ray(*args, timeout=timeout)
        return submission_id, subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=timeout)

    def client_env(self, token: str | None) -> dict:
        """A laptop's environment: no RAY_* variables but, if given, the token it fetched."""
        env = {k: v for k, v in self.env.items() if not k.startswith("RAY_")}
        env["HOME"] = str(self.temp_dir)  # no ~/.ray/auth_token of this machine's user
        return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if token else env

    def status(self, submission_id: str) -> str:
        """The job's final state as the job API reports it, e.g. 'SUCCEEDED'."""
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(self.address, headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"})
        return str(client.get_job_status(submission_id).value)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers of this head only
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


@pytest.fixture
def ray_head():
    root = Path(tempfile.mkdtemp(prefix="gfray", dir="/tmp"))  # short: Ray's socket paths are length-limited
    head = RayHead(root)
    try:
        head.wait_ready()
        yield head
    finally:
        head.stop()
        shutil.rmtree(root, ignore_errors=True)
        head.log.unlink(missing_ok=True)


def uploaded_package(head: RayHead) -> Path:
    """The working dir as the job received it (unpacked by Ray on this node)."""
    found = [p for p in head.temp_dir.glob("session_latest/runtime_resources/working_dir_files/_ray_pkg_*")
             if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.slow
def test_pipeline_then_train_jobs_on_a_ray_head(ray_head, tmp_path):
    data = tmp_path / "data"
    make_tree(data, per_genre=3)
    toml = write_toml(tmp_path / "genreflow.toml", duration_s=3.0)
    common = ["--data-dir", str(data), "--config", str(toml), "--features", "mfcc"]

    job, done = ray_head.submit(sys.executable, "jobs/pipeline.py", *common, "--workers", "2")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert ray_head.status(job) == "SUCCEEDED"
    processed = data / "processed"
    assert (processed / "dataset_index.json").is_file() and (processed / "splits.json").is_file()
    shards = list((processed / "store" / "mfcc").glob("*/part-*.parquet"))
    assert shards and "mfcc [" in done.stdout and "6 computed" in done.stdout
    assert not (processed / "classifier_model.zip").exists()  # the pipeline job does not train

    package = uploaded_package(ray_head)
    assert (package / "jobs" / "pipeline.py").is_file() and (package / "genreflow" / "cli" / "__init__.py").is_file()
    assert not (package / ".git").exists() and not (package / "data").exists()

    # the README's token steps: a client without the token is refused; `ray get-auth-token` on
    # the head prints it, and exported as RAY_AUTH_TOKEN it lets `ray job submit` through
    refused = subprocess.run([RAY, "job", "list", "--address", ray_head.address], env=ray_head.client_env(None),
                       capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "auth" in (refused.stdout + refused.stderr).lower()
    fetched = ray_head.ray("get-auth-token", timeout=60)
    assert fetched.returncode == 0, fetched.stderr
    token = fetched.stdout.strip().splitlines()[-1]
    job, done = ray_head.submit(sys.executable, "jobs/train.py", *common, env=ray_head.client_env(token))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert ray_head.status(job) == "SUCCEEDED"
    assert (processed / "classifier_model.zip").is_file() and (processed / "model_meta.json").is_file()
    metrics = json.loads((processed / "reports" / "metrics.json").read_text())
    assert metrics["features"] == "mfcc" and metrics["n_train"] + metrics["n_val"] == 6
