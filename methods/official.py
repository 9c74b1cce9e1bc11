"""The authors' released checkpoints, read into vosbench's official variants.

A method whose authors published their network declares how their test script reads its weights
(`CheckpointFormat`): which entries of the file hold state dicts (AGNN: `torch.load(path)["model"]`;
AMC-Net: the file is the state dict; AGSS-VOS: `["seg"]` and `["flow"]`), the prefix their keys
carry (DataParallel's `module.`), and a key table of (their prefix, vosbench prefix) pairs that
renames each of their keys to the official variant's. The table is explicit: a key takes the
entry whose prefix is its longest match, nothing is guessed. `read_official_state` reads a file
strictly: a key no entry maps, a key of the variant that the file does not fill (buffers a
format lists as optional aside, such as the `num_batches_tracked` that torch 0.4 never saved) and
a tensor of another shape are each an error naming the key.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from vosbench.errors import InputError


class CheckpointError(InputError):
    """An authors' checkpoint that does not fit the official variant; the message names the file
    and the key."""


@dataclass(frozen=True)
class CheckpointEntry:
    """One state dict of an authors' checkpoint file.

    key: the entry of the file's dict that holds it (`torch.load(path)[key]`); None when the file
        is the state dict itself.
    strip: the prefix every one of its keys carries and loses first ("module." when the authors
        saved a `DataParallel` model), "" for none.
    table: (their prefix, vosbench prefix) pairs: a key (after `strip`) that starts with their
        prefix is renamed by replacing it with the vosbench prefix; of several matching prefixes
        the longest wins. A pair of two full keys renames one key.
    """

    key: str | None
    strip: str
    table: tuple[tuple[str, str], ...]

    def rename(self, key: str) -> str | None:
        """The vosbench name of one of their keys (`strip` already removed), None when no
        prefix of the table matches it."""
        matches = [(theirs, ours) for theirs, ours in self.table if key.startswith(theirs)]
        if not matches:
            return None
        theirs, ours = max(matches, key=lambda pair: len(pair[0]))
        return ours + key[len(theirs):]

    def original(self, name: str) -> str | None:
        """The key of the file (with `strip`) that the table renames to the variant's `name`, None
        when no row leads there."""
        matches = [(theirs, ours) for theirs, ours in self.table if name.startswith(ours)]
        for theirs, ours in sorted(matches, key=lambda pair: -len(pair[1])):
            key = theirs + name[len(ours):]
            if self.rename(key) == name:
                return self.strip + key
        return None


@dataclass(frozen=True)
class CheckpointFormat:
    """How the authors' test script reads their checkpoint: its entries, and the suffixes of the
    variant's buffers that the file may lack (filled with the variant's own values)."""

    entries: tuple[CheckpointEntry, ...]
    optional_buffers: tuple[str, ...] = ()


def load_checkpoint_file(path: Path) -> object:
    """`torch.load(path, weights_only=True)` on the CPU; InputError naming the file when it is
    missing or holds more than tensors and plain containers."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or unsafe files
        raise CheckpointError(f"{path}: cannot be read as a checkpoint of tensors by "
                              f"torch.load(weights_only=True) ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:200]})") from None


def entry_state(document: object, entry: CheckpointEntry, path: Path) -> Mapping:
    """The state dict of one entry of a loaded file, checked to map names to tensors."""
    where = f"{path}" if entry.key is None else f"{path}[{entry.key!r}]"
    if entry.key is not None:
        if not isinstance(document, Mapping) or entry.key not in document:
            found = sorted(map(str, document)) if isinstance(document, Mapping) else \
                type(document).__name__
            raise CheckpointError(f"{path}: expected an entry {entry.key!r} (the authors' test "
                                  f"script reads torch.load(path)[{entry.key!r}]), found {found}")
        document = document[entry.key]
    if not isinstance(document, Mapping) or not all(
            isinstance(value, torch.Tensor) for value in document.values()):
        raise CheckpointError(f"{where}: expected a state dict (names → tensors)")
    return document


def map_entry(state: Mapping, entry: CheckpointEntry, where: str) -> dict[str, torch.Tensor]:
    """Their keys → the variant's names by the entry's table; CheckpointError naming the first
    key without the entry's prefix or without a row of the table."""
    mapped = {}
    for key, value in state.items():
        if not key.startswith(entry.strip):
            raise CheckpointError(f"{where}: key {key!r} lacks the prefix {entry.strip!r} "
                                  f"that every key of this entry carries")
        name = entry.rename(key[len(entry.strip):])
        if name is None:
            raise CheckpointError(f"{where}: key {key!r} is not used by the official variant "
                                  f"(no row of its key table maps it)")
        if name in mapped:
            raise CheckpointError(f"{where}: key {key!r} maps onto {name!r}, which another key "
                                  f"of the file fills already")
        mapped[name] = value
    return mapped


def read_official_state(path: str | Path, checkpoint: CheckpointFormat,
                        expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read an authors' checkpoint file into a complete state dict of the official variant.

    expected: the variant's own state dict (names, shapes, dtypes; the values of optional
    buffers the file lacks). Returns every key of `expected`, the file's tensors cast to the
    variant's dtypes. Raises CheckpointError naming the file and the key on an unmapped key, a
    key of the variant the file does not fill, or a tensor of another shape.
    """
    path = Path(path)
    document = load_checkpoint_file(path)
    mapped: dict[str, torch.Tensor] = {}
    for entry in checkpoint.entries:
        where = f"{path}" if entry.key is None else f"{path}[{entry.key!r}]"
        for name, value in map_entry(entry_state(document, entry, path), entry, where).items():
            if name in mapped:
                raise CheckpointError(f"{where}: {name!r} is filled by two entries of the file")
            mapped[name] = value
    for name, value in mapped.items():
        if name not in expected:
            raise CheckpointError(f"{path}: the key table maps a key onto {name!r}, which the "
                                  f"official variant does not have")
        if tuple(value.shape) != tuple(expected[name].shape):
            raise CheckpointError(f"{path}: {name!r} has shape {tuple(value.shape)} in the file, "
                                  f"{tuple(expected[name].shape)} in the official variant")
    state = {}
    for name, value in expected.items():
        if name in mapped:
            state[name] = mapped[name].to(value.dtype)
        elif name.endswith(checkpoint.optional_buffers):
            state[name] = value.clone()
        else:
            origins = [entry.original(name) for entry in checkpoint.entries]
            wanted = next((f" (the file's {key!r})" for key in origins if key), "")
            raise CheckpointError(f"{path}: the official variant's {name!r}{wanted} is not "
                                  f"filled by any key of the file")
    return state
