"""Real data sets that ship with installed packages; nothing is downloaded.

- Digits: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes),
  split once into train, validation and test with a fixed seed, stratified by class.
- Python source: the `.py` files of the running interpreter's standard library
  (`sysconfig.get_paths()["stdlib"]`), in sorted order, split by file.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib
import sysconfig

import numpy as np

from autogan_jax.core import validation

DIGITS_SPLIT_SEED = 0
# Share of the 1797 digits images per split; the rest is the training split.
DIGITS_VALID_FRACTION = 0.2
DIGITS_TEST_FRACTION = 0.2

# Characters are UTF-8 bytes; bytes outside ASCII map to one shared id.
CHAR_VOCAB_SIZE = 128
NON_ASCII_ID = 0


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySplits:
  """Features and labels of a fixed train, validation and test split.

  Instances compare and hash by identity, so a task can hold one as a static
  field of a jitted function without hashing its arrays.
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_valid: np.ndarray
  y_valid: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray

  def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    validation.check_choice("split", name, ("train", "valid", "test"))
    return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


@functools.lru_cache(maxsize=4)
def load_digits(seed: int = DIGITS_SPLIT_SEED) -> ArraySplits:
  """Load scikit-learn's 8x8 digits with pixels scaled to [0, 1] and a stratified split.

  With the default seed the split sizes are 1078 train, 359 validation and 360 test.
  """
  from sklearn import datasets as sk_datasets
  from sklearn import model_selection

  digits = sk_datasets.load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  y = digits.target.astype(np.int32)
  held_fraction = DIGITS_VALID_FRACTION + DIGITS_TEST_FRACTION
  x_train, x_held, y_train, y_held = model_selection.train_test_split(
      x, y, test_size=held_fraction, random_state=seed, stratify=y)
  test_share = DIGITS_TEST_FRACTION / held_fraction
  x_valid, x_test, y_valid, y_test = model_selection.train_test_split(
      x_held, y_held, test_size=test_share, random_state=seed, stratify=y_held)
  return ArraySplits(x_train, y_train, x_valid, y_valid, x_test, y_test)


def stdlib_root() -> pathlib.Path:
  """Return the `Lib` folder of the running interpreter's standard library."""
  return pathlib.Path(sysconfig.get_paths()["stdlib"])


def stdlib_source_files(root: pathlib.Path | None = None) -> list[pathlib.Path]:
  """List the standard library's `.py` files in sorted order of their relative paths.

  Installed third-party packages (`site-packages`, `dist-packages`) are not part of
  the standard library and are left out.
  """
  root = root or stdlib_root()
  files = []
  for path in root.rglob("*.py"):
    relative = path.relative_to(root)
    if relative.parts and relative.parts[0] in ("site-packages", "dist-packages"):
      continue
    if path.is_file():
      files.append(path)
  if not files:
    raise FileNotFoundError(f"No .py files found under the standard library folder {root}.")
  return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def file_split(relative_path: str) -> str:
  """Assign a file to "train", "valid" or "test" by a hash of its relative path.

  A hash, not a position in the list, decides, so adding or removing a file in
  another Python release moves no other file between splits. One file in ten goes
  to validation and one in ten to test.
  """
  bucket = int(hashlib.sha256(relative_path.encode()).hexdigest(), 16) % 10
  if bucket == 0:
    return "test"
  if bucket == 1:
    return "valid"
  return "train"


def encode_text(text: str) -> np.ndarray:
  """Encode text as UTF-8 bytes, mapping every non-ASCII byte to `NON_ASCII_ID`."""
  data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)
  return np.where(data < CHAR_VOCAB_SIZE, data, NON_ASCII_ID).astype(np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class TextSplits:
  """Character ids of the train, validation and test splits, each one long stream."""

  train: np.ndarray
  valid: np.ndarray
  test: np.ndarray
  files: dict[str, tuple[str, ...]]

  def split(self, name: str) -> np.ndarray:
    validation.check_choice("split", name, ("train", "valid", "test"))
    return getattr(self, name)


@functools.lru_cache(maxsize=4)
def load_stdlib_text(max_chars: int = 2_000_000, max_eval_chars: int = 200_000) -> TextSplits:
  """Read the standard library's source into train, validation and test streams.

  Files are taken in sorted order and appended to their split until it holds
  `max_chars` (train) or `max_eval_chars` (validation, test) characters, so the
  same interpreter always gives the same streams. Files are separated by a
  form feed, which marks the boundary for the model.
  """
  validation.check("max_chars", max_chars, validation.IntRange(1_000))
  validation.check("max_eval_chars", max_eval_chars, validation.IntRange(1_000))
  root = stdlib_root()
  budget = {"train": max_chars, "valid": max_eval_chars, "test": max_eval_chars}
  chunks: dict[str, list[np.ndarray]] = {name: [] for name in budget}
  used = dict.fromkeys(budget, 0)
  names: dict[str, list[str]] = {name: [] for name in budget}
  for path in stdlib_source_files(root):
    relative = path.relative_to(root).as_posix()
    split = file_split(relative)
    if used[split] >= budget[split]:
      if all(used[name] >= budget[name] for name in budget):
        break
      continue
    text = path.read_text(encoding="utf-8", errors="replace") + "\f"
    ids = encode_text(text)[: budget[split] - used[split]]
    chunks[split].append(ids)
    used[split] += len(ids)
    names[split].append(relative)
  streams = {name: np.concatenate(chunks[name]) for name in budget}
  return TextSplits(**streams, files={k: tuple(v) for k, v in names.items()})
