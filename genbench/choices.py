"""The fixed choices and defaults the command line names in its signatures and help texts.

They live here, in a module that imports nothing, so that ``genbench --help``, ``--version`` and a
rejected flag are answered without importing torch, pandas or matplotlib. The modules that act
on these choices (the leaderboard's renderer, the bootstrap, the board's slices, the data folder,
the downloads, the reports) take them from here.
"""

from __future__ import annotations

#: The leaderboard's output formats (``genbench leaderboard --format``).
LEADERBOARD_FORMATS = ("table", "markdown", "csv", "json", "html")
#: The formats of the leaderboard that ``run`` and ``evaluate`` print (``genbench report`` and
#: ``genbench leaderboard --format html`` write the html page).
RUN_FORMATS = ("table", "markdown", "csv", "json")
#: The keys the leaderboard's rows can be sorted by (``--sort``); ``genbench.report.leaderboard``
#: maps each to its column.
SORT_KEYS = ("tau", "psi", "cmi", "sign-error", "tau-level", "seconds", "name")
#: Bootstrap replicates drawn per board unless told otherwise (``--bootstrap``); 0 draws none.
REPLICATES = 1000
#: The run columns a board may be sliced by (``--by``): one board per value.
SLICE_AXES = ("model", "dataset", "corruption", "test_labels")
#: The environment variable naming the data folder (``--data-dir`` reads it too).
DATA_ENV = "GENBENCH_DATA"
#: The datasets ``genbench data download`` fetches; ``genbench.datasets.download`` has their sources.
DOWNLOADS = ("cifar10", "mnist", "fashion-mnist")
#: The reports ``genbench report`` writes; the first is the default.
REPORTS = ("zhang2017",)
