"""Finding, downloading, parsing and caching FER2013 and FER+ (knows nothing of models)."""

from fer_utils.data.dataset import FERPLUS_COLUMNS, DataError, Dataset, FerPlus, as_batch
from fer_utils.data.load import load_fer2013
from fer_utils.data.locate import DATA_ENV, FERPLUS_ENV, find_data, find_ferplus

__all__ = [
    "DATA_ENV",
    "FERPLUS_COLUMNS",
    "FERPLUS_ENV",
    "DataError",
    "Dataset",
    "FerPlus",
    "as_batch",
    "find_data",
    "find_ferplus",
    "load_fer2013",
]
