"""Reading books: files, directories, globs and catalogue names to clean text.

reading.py     one file → text (encoding, line endings, Gutenberg boilerplate)
encodings.py   bytes → text: byte-order marks, binary formats, detection
gutenberg.py   the Project Gutenberg header and footer
inputs.py      what the user named → the files to read
splits.py      train / validation / test regions of each book, and of example sets
examples.py    short examples (names, sentences), labelled by file, directory or table column
tables.py      .tsv, .csv and .jsonl rows of labelled examples
catalog.py     corpora/catalog.toml: downloadable public-domain books
download.py    fetching a catalogue book, verified and atomic
"""

from .catalog import DEFAULT_CORPUS_DIR, Entry, load_catalog
from .download import Fetched, fetch, is_present
from .examples import EXAMPLE_UNITS, LABEL_SOURCES, Duplicates, ExampleSet, read_examples
from .inputs import input_name, resolve_inputs
from .reading import Book, read_book
from .splits import SplitConfig, split_examples, split_regions

__all__ = [
    "DEFAULT_CORPUS_DIR",
    "EXAMPLE_UNITS",
    "LABEL_SOURCES",
    "Book",
    "Duplicates",
    "Entry",
    "ExampleSet",
    "Fetched",
    "SplitConfig",
    "fetch",
    "input_name",
    "is_present",
    "load_catalog",
    "read_book",
    "read_examples",
    "resolve_inputs",
    "split_examples",
    "split_regions",
]
