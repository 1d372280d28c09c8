#!/usr/bin/env bash
# The GPU check: one table of lcp-tune on a GPU (default search end to end, ResNet-56 search
# throughput per GPU share, ResNet-50 trial phases, fine-tune step with and without bf16 and
# channels_last), in under 8 minutes. Options go to benchmarks/gpu_check.py:
#   bash benchmarks/gpu_check.sh                       # --device cuda
#   bash benchmarks/gpu_check.sh --smoke --device cpu  # the tests' run
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_check.py "$@"
