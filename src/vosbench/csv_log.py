"""`metrics.csv` of a run folder, kept across resumes."""

import csv
import io
from pathlib import Path

from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from vosbench.io import write_atomic


class RunCSVLogger(Logger):
    """Every logged row in `<folder>/metrics.csv`, in Lightning's CSV layout: one column per
    name, sorted, `step` among them; a cell is empty where its row lacks the name.

    Lightning's CSVLogger deletes the file an earlier run left in the folder, so a resumed fit
    lost its first part, and holds rows in memory until it flushes, so a killed one lost its
    last ones. This one writes each row when it is logged and keeps the file: a test in its
    fit's folder adds rows; a fit from scratch starts a new file (`restart`); a resumed fit
    continues it (`resume`): the first row it logs, at step s, replaces the rows of steps s and
    later, which the run that died logged after its checkpoint. Rank 0 writes; hyperparameters
    are not logged (the run's config.yaml holds them).
    """

    FILE_NAME = "metrics.csv"

    def __init__(self, folder: str | Path):
        super().__init__()
        self.folder = Path(folder)
        self.header: list[str] | None = None  # the file's, once read
        self.resuming = False

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        """The run folder; with empty `name` and `version`, checkpoints go to its checkpoints/."""
        return str(self.folder)

    @property
    def path(self) -> Path:
        return self.folder / self.FILE_NAME

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    @rank_zero_only
    def restart(self) -> None:
        """A fit from scratch: remove the file of an earlier run in the folder."""
        self.path.unlink(missing_ok=True)
        self.header, self.resuming = [], False

    def resume(self) -> None:
        """A resumed fit: the next row logged replaces the rows of its step and later."""
        self.resuming = True

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        row = {name: value.item() if hasattr(value, "item") else value
               for name, value in metrics.items()}
        row["step"] = step
        if self.header is None:
            self.header = self.read()[0]
        if self.resuming and step is not None:
            self.keep_before(step)
        names = sorted(set(self.header) | set(row))
        if names == self.header:
            with open(self.path, "a", newline="") as stream:
                csv.DictWriter(stream, names).writerow(row)
        else:
            self.write(names, [*self.read()[1], row])

    def keep_before(self, step: int) -> None:
        """Keep the rows logged before `step` (and the names they fill): the file as it was
        when the run that died logged its last row before `step`."""
        rows = self.read()[1]
        kept = [row for row in rows if not row["step"] or int(row["step"]) < step]
        if len(kept) < len(rows):
            self.write(sorted({name for row in kept for name, value in row.items() if value}),
                       kept)
        self.resuming = False

    def read(self) -> tuple[list[str], list[dict]]:
        """(header, rows) of the file; ([], []) when there is none."""
        if not self.path.is_file():
            return [], []
        with open(self.path, newline="") as stream:
            reader = csv.DictReader(stream)
            return list(reader.fieldnames or []), list(reader)

    def write(self, names: list[str], rows: list[dict]) -> None:
        """Replace the file (atomically) by these rows under the header `names` (no rows: no
        file)."""
        self.header = names if rows else []
        if not rows:
            self.path.unlink(missing_ok=True)
            return
        text = io.StringIO()
        writer = csv.DictWriter(text, names, extrasaction="ignore")  # names left empty
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(self.path, text.getvalue(), sync=False)
