"""Ray job: train and evaluate the classifier from the shared store (after jobs/pipeline.py).

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python jobs/train.py --data-dir s3://BUCKET/data --features vggish

Takes every option of `genreflow train` (see `python jobs/train.py --help`); writes the model,
model_meta.json and reports/ under DATA_DIR/processed. No logic lives here: this is
`genreflow train`.
"""

import sys

from genreflow.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]], prog_name="jobs/train.py")
