"""--data-dir as a URI: genreflow.core.fs against a real S3 API (moto's server on loopback), the
fsspec fallback, and `genreflow run` with its audio, index, store and model all in a bucket."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genreflow.core.fs import atomic_write_bytes, exists, list_files, locate, read_bytes, read_text
from pipeline_support import make_tree, write_toml

BUCKET = "genreflow-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}


class S3:
    """A moto S3 server on 127.0.0.1 and URIs that point genreflow at it."""

    def __init__(self, port: int) -> None:
        self.query = f"endpoint_override=127.0.0.1:{port}&scheme=http"
        self.endpoint = f"http://127.0.0.1:{port}"

    def uri(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}?{self.query}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def keys(self, prefix: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
        return sorted(o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", []))


@pytest.fixture(scope="module")
def s3():
    from moto.server import ThreadedMotoServer  # the test extra's moto[server]

    with pytest.MonkeyPatch.context() as mp:
        for key, value in CREDENTIALS.items():
            mp.setenv(key, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            s3 = S3(server.get_host_and_port()[1])
            s3.client().create_bucket(Bucket=BUCKET)
            yield s3
        finally:
            server.stop()


def test_an_s3_uri_resolves_to_bucket_and_key(s3):
    loc = locate(s3.uri("a/b"))
    assert loc.fs.type_name == "s3" and not loc.local
    assert loc.path == f"{BUCKET}/a/b"
    assert str(loc.join("c.json")) == f"s3://{BUCKET}/a/b/c.json"  # messages show no endpoint


def test_an_object_is_written_whole_in_one_put_without_folder_markers(s3):
    """Object stores have no rename: the write is one PutObject (a multipart upload would
    carry an ETag ending in -<parts>) and no empty 'folder/' objects are left behind."""
    data = os.urandom(200_000)
    target = locate(s3.uri("atomic")).join("store", "mfcc", "0123456789abcdef", "part-x.parquet")
    atomic_write_bytes(target, data)
    assert read_bytes(target) == data
    assert s3.keys("atomic") == ["store/mfcc/0123456789abcdef/part-x.parquet"]
    etag = s3.client().head_object(Bucket=BUCKET, Key="atomic/store/mfcc/0123456789abcdef/part-x.parquet")["ETag"]
    assert etag.strip('"') == hashlib.md5(data).hexdigest()
    assert not s3.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_listing_and_existence_work_on_prefixes(s3):
    root = locate(s3.uri("listing"))
    for rel in ("raw/rock/a.wav", "raw/rock/sub/b.flac", "raw/jazz/c.mp3"):
        atomic_write_bytes(root.join(rel), b"x")
    assert exists(root.join("raw")) and exists(root.join("raw", "rock", "a.wav"))
    assert not exists(root.join("raw", "blues"))
    found = {e.path[len(root.path) + 1:] for e in list_files(root.join("raw"))}
    assert found >= {"raw/rock/a.wav", "raw/rock/sub/b.flac", "raw/jazz/c.mp3", "raw/rock", "raw/jazz"}


def test_schemes_pyarrow_lacks_go_through_fsspec():
    loc = locate("memory://genreflow-fsspec/data")
    assert loc.fs.type_name.startswith("py::fsspec")
    atomic_write_bytes(loc.join("processed", "x.json"), b'{"a": 1}')
    assert json.loads(read_text(loc.join("processed", "x.json"))) == {"a": 1}
    assert str(loc).startswith("memory://") and str(loc).endswith("genreflow-fsspec/data")


def test_a_gcs_uri_resolves_without_network():
    loc = locate("gs://some-bucket/data")
    assert loc.fs.type_name == "gcs" and str(loc) == "gs://some-bucket/data"


def upload_tree(s3: S3, local: Path, prefix: str) -> int:
    """Put every file under ``local`` at s3://BUCKET/<prefix>/<same relative path>."""
    client, count = s3.client(), 0
    for path in sorted(local.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(local).as_posix()}")
            count += 1
    return count


def genreflow(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, **CREDENTIALS}
    return subprocess.run([sys.executable, "-m", "genreflow", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)


@pytest.mark.slow
def test_run_keeps_everything_in_the_bucket(s3, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    from genreflow.model.bundle import load_model_bundle
    from genreflow.api import read_features

    make_tree(tmp_path / "local", per_genre=3)  # local/raw/<genre>/clip_<i>.<fmt>
    assert upload_tree(s3, tmp_path / "local", "run") == 6
    uri = s3.uri("run")
    toml = write_toml(tmp_path / "genreflow.toml", duration_s=3.0)
    args = ["run", "--data-dir", uri, "--config", str(toml), "--features", "mfcc", "--workers", "2"]

    done = genreflow(args, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "6 computed" in done.stdout and f"s3://{BUCKET}/run/processed/classifier_model.zip" in done.stdout
    assert "endpoint_override" not in done.stdout  # locations print as s3://bucket/key

    keys = s3.keys("run")
    for name in ("dataset_index.json", "index.parquet", "splits.json", "classifier_model.zip", "model_meta.json",
                 "reports/metrics.json", "reports/confusion_matrix.png"):
        assert f"processed/{name}" in keys, keys
    shards = [k for k in keys if k.startswith("processed/store/mfcc/") and k.endswith(".parquet")]
    assert shards and any(k.endswith("/_params.json") for k in keys)
    assert not [k for k in keys if ".tmp-" in k or k.endswith("/")]  # no temp files, no folder markers

    folder = locate(uri).join(*shards[0].split("/")[:-1])  # plain pandas over the bucket, no genreflow
    frame = pd.read_parquet(folder.path, filesystem=folder.fs)
    assert len(frame) == 6 and {"content_hash", "mfcc", "n_mfcc", "n_frames"} <= set(frame.columns)
    row = frame.iloc[0]
    assert len(row["mfcc"]) == row["n_mfcc"] * row["n_frames"]
    shard = folder.join(shards[0].rsplit("/", 1)[1])
    assert pq.read_metadata(shard.path, filesystem=folder.fs).metadata[b"genreflow.fingerprint"] == \
        folder.name.encode()
    assert len(read_features(uri, "mfcc", with_index=True)) == 6
    assert load_model_bundle(uri.replace("?", "/processed/classifier_model.zip?")).features == "mfcc"

    # predict from the bucket: model found under --data-dir (scheme and endpoint kept), inputs as a
    # URI prefix, features reused from the bucket's store by content hash
    out = tmp_path / "tags.csv"
    predicted = genreflow(["predict", s3.uri("run/raw"), "--data-dir", uri, "--out", str(out)], tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "6 files, 0 computed, 6 from the store, 0 failed" in predicted.stderr
    tags = pd.read_csv(out, keep_default_na=False)
    assert len(tags) == 6 and (tags.error == "").all() and tags.path.str.startswith(f"s3://{BUCKET}/run/raw/").all()

    again = genreflow(args, tmp_path)  # a rerun reuses the bucket's store
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 computed, 6 already cached" in again.stdout
    assert [k for k in s3.keys("run") if k.startswith("processed/store/")] == \
        [k for k in keys if k.startswith("processed/store/")]
