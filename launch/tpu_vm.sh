#!/usr/bin/env bash
# Train on a Cloud TPU VM slice: install on every worker, then start the same command everywhere.
# JAX finds the slice's coordinator itself (distributed.auto=True).
#   TPU=my-v5p-128 ZONE=us-east5-a launch/tpu_vm.sh --config=configs/starcoder2.py:3b \
#       --config.data.prepared_dir=gs://bucket/data --config.workdir=gs://bucket/runs/sc2-3b
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE}"
REPO=${REPO:-https://github.com/your-org/jaxcoder.git}
ssh() { gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command "$1"; }
ssh "test -d jaxcoder || git clone $REPO jaxcoder; cd jaxcoder && python3 -m venv .venv && \
     .venv/bin/pip install -q -e . 'jax[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
ssh "cd jaxcoder && .venv/bin/jaxcoder train --config.distributed.auto=True $*"
