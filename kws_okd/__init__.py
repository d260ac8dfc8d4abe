"""kws-okd: tiny keyword spotters distilled to survive acoustic shift (OKD)."""
import os

# OpenMP threads that spin while waiting make 2-core machines crawl as soon as anything
# else runs (augmentation throughput fell 5-10x in our benchmark); wait passively unless
# the user chose otherwise. Must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
