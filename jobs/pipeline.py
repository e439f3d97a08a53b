"""Ray job: index + MFCC + VGGish (when --features needs it) into the shared store, no training.

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python jobs/pipeline.py --data-dir s3://BUCKET/data --features vggish --workers 32

Takes every option of `genreflow run` (see `python jobs/pipeline.py --help`). `ray job submit`
sets RAY_ADDRESS for this driver, so genreflow joins the cluster instead of starting Ray. Then
run jobs/train.py. No logic lives here: this is `genreflow run --no-train`.
"""

import sys

from genreflow.cli import main

if __name__ == "__main__":
    main(["run", "--no-train", *sys.argv[1:]], prog_name="jobs/pipeline.py")
