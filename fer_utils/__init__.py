"""fer_utils: facial expression recognition on FER2013, from data to explanations.

The modules follow the flow data → cleaning → preprocessing → models → training →
evaluation → ensemble / explain / inference; notebooks are narrated calls into them.
"""

from fer_utils.config import EMOTIONS, SPLITS

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "SPLITS", "__version__"]
