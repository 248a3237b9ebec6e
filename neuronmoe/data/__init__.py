"""Data preparation (``neuronmoe prepare-data``): corpora -> samples/train/heldout/replay/udhr."""
from neuronmoe.data.prepare import DataConfig, prepare_data, process_language
from neuronmoe.data.sources import SourceError, make_source
from neuronmoe.data.text import clean_generated, dedup_key, split_sentences
from neuronmoe.data.udhr import load_udhr, parse_udhr_html

__all__ = [
    "DataConfig", "prepare_data", "process_language", "SourceError", "make_source", "clean_generated",
    "dedup_key", "split_sentences", "load_udhr", "parse_udhr_html",
]
