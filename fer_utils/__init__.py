"""fer_utils: facial expression recognition on FER2013, from data to explanations.

The modules follow the flow data → cleaning → preprocessing → models → training →
evaluation → ensemble / explain / inference; notebooks are narrated calls into them.
"""

import os

# oneDNN kernels double TensorFlow's CPU training speed on these machines (measured with
# benchmarks/bench_training.py; TF leaves them off on AMD CPUs). It must be set before
# TensorFlow is imported, so importing fer_utils first turns it on unless the user chose.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings

from fer_utils import tf_quiet
from fer_utils.config import EMOTIONS, SPLITS

tf_quiet.install()  # TensorFlow's start-up log lines off stderr when it is imported
# lime and tf-keras-vis import tqdm.auto, which warns in a Jupyter kernel without ipywidgets
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "SPLITS", "__version__"]
