"""bovine-herd as an ASGI app, served by Hypercorn in a venv of its own (see venv.py).

Run from a working folder: bovine keeps ``bovine.sqlite3`` (its store) and
``bovine_jsonld_cache.sqlite`` (JSON-LD contexts, pre-seeded by ``seed_jsonld.py``) in the
current directory. Not imported by Steelyard's tests: it runs in bovine's interpreter.
"""

from bovine_herd import BovineHerd
from quart import Quart

app = Quart(__name__)
BovineHerd(app)
