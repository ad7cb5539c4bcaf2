"""A model zoo: many sampled specs trained on a task, saved and loaded as a data set.

`ZooTrainer.train` trains specs in padded populations, one compiled trainer per
family, and returns a `ModelRecord` per spec with its parameters at its own
sizes, its training curve and its held-out metrics. `save_zoo` writes each
record's spec as JSON and all arrays in one orbax checkpoint; `load_zoo` reads
them back without knowing anything but the folder.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from autogan_jax.core import tree as tree_lib
from autogan_jax.core import validation
from autogan_jax.model_space import builder
from autogan_jax.model_space import network
from autogan_jax.model_space import population
from autogan_jax.model_space import space as space_lib
from autogan_jax.model_space import spec as spec_lib


@dataclasses.dataclass
class ModelRecord:
  """One trained model of a zoo.

  Attributes:
    spec: the model's spec.
    params: parameters at the spec's own sizes, name to array.
    init_params: parameters before training, at the same sizes.
    curve: training loss of every step, float32 [steps].
    metrics: "valid_loss", "valid_accuracy", "test_loss", "test_accuracy" and
      "finite" (1.0, or 0.0 when training produced NaN or infinity; such a
      model's accuracies are set to 0).
  """

  spec: spec_lib.ModelSpec
  params: dict[str, np.ndarray]
  init_params: dict[str, np.ndarray]
  curve: np.ndarray
  metrics: dict[str, float]


def own_shapes(spec: spec_lib.ModelSpec, io: spec_lib.ModelIO) -> dict[str, tuple[int, ...]]:
  """Return the parameter shapes of `spec` at its own sizes."""
  shapes = jax.eval_shape(lambda k: network.init_params(spec, io, k), jax.random.key(0))
  return {name: s.shape for name, s in shapes.items()}


def extract_params(padded: network.Params, spec: spec_lib.ModelSpec,
                   io: spec_lib.ModelIO) -> dict[str, np.ndarray]:
  """Cut a padded member's parameters back to the spec's own sizes (inverse of `embed_params`)."""
  return {name: np.asarray(padded[name][tuple(slice(0, n) for n in shape)])
          for name, shape in own_shapes(spec, io).items()}


class ZooTrainer:
  """Trains lists of specs of a search space on one task under a fixed number of steps."""

  def __init__(self, space: space_lib.SearchSpace, data, io: spec_lib.ModelIO, steps: int,
               population_size: int = 8, tx: optax.GradientTransformation | None = None):
    validation.check("steps", steps, validation.IntRange(1))
    validation.check("population_size", population_size, validation.IntRange(1))
    self.space = space
    self.data = data
    self.io = io
    self.steps = steps
    self.population_size = population_size
    self._tx = tx
    self._trainers = {}
    self._evaluators = {}
    self.trained = 0

  def _compiled(self, family: str):
    if family not in self._trainers:
      envelope = self.space.envelope(family, self.io)
      self._trainers[family] = population.make_trainer(envelope, self.steps, self._tx)
      self._evaluators[family] = population.make_evaluator(envelope)
    return self._trainers[family], self._evaluators[family]

  def train(self, specs: Sequence[spec_lib.ModelSpec], key: jax.Array) -> list[ModelRecord]:
    """Train every spec from its own initialisation; the key of spec i is `fold_in(key, i)`."""
    records: list[ModelRecord | None] = [None] * len(specs)
    by_family: dict[str, list[int]] = {}
    for i, s in enumerate(specs):
      by_family.setdefault(s.family, []).append(i)
    for family, indices in by_family.items():
      trainer, evaluator = self._compiled(family)
      envelope = self.space.envelope(family, self.io)
      for start in range(0, len(indices), self.population_size):
        chunk = indices[start:start + self.population_size]
        # Fill the population with copies so every call has one shape and compiles once.
        filled = chunk + [chunk[0]] * (self.population_size - len(chunk))
        keys = jnp.stack([jax.random.fold_in(key, i) for i in filled])
        init_keys, train_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
        _, params, codes = builder.build_population([specs[i] for i in filled], self.io,
                                                    init_keys, envelope)
        trained, losses, finite = trainer(params, codes, train_keys, self.data)
        valid = evaluator(trained, codes, *self.data.split("valid"))
        test = evaluator(trained, codes, *self.data.split("test"))
        for j, i in enumerate(chunk):
          member = tree_lib.index(trained, j)
          ok = bool(finite[j])
          if not ok:
            logging.warning("Quarantined %s: training produced NaN or infinity.",
                            specs[i].describe())
          metrics = {
              "valid_loss": float(valid["loss"][j]) if ok else float("nan"),
              "valid_accuracy": float(valid["accuracy"][j]) if ok else 0.0,
              "test_loss": float(test["loss"][j]) if ok else float("nan"),
              "test_accuracy": float(test["accuracy"][j]) if ok else 0.0,
              "finite": float(ok)}
          records[i] = ModelRecord(
              spec=specs[i], params=extract_params(member, specs[i], self.io),
              init_params=extract_params(tree_lib.index(params, j), specs[i], self.io),
              curve=np.asarray(losses[j]), metrics=metrics)
        self.trained += len(chunk)
    return records


def save_zoo(directory: str | pathlib.Path, records: Sequence[ModelRecord],
             io: spec_lib.ModelIO, task: str) -> pathlib.Path:
  """Write a zoo: `zoo.json`, `specs/model_NNNN.json` and the arrays as one orbax checkpoint."""
  directory = pathlib.Path(directory).absolute()
  (directory / "specs").mkdir(parents=True, exist_ok=True)
  index = {"task": task, "io": dataclasses.asdict(io), "models": []}
  arrays = {}
  for i, record in enumerate(records):
    name = f"model_{i:04d}"
    entry = {"id": name, "spec": record.spec.to_dict(), "metrics": record.metrics}
    (directory / "specs" / f"{name}.json").write_text(json.dumps(entry, indent=2) + "\n")
    index["models"].append(entry)
    arrays[name] = {"params": record.params, "init_params": record.init_params,
                    "curve": record.curve}
  (directory / "zoo.json").write_text(json.dumps(index, indent=2) + "\n")
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(directory / "arrays", arrays, force=True)
  checkpointer.wait_until_finished()
  return directory


def load_zoo(directory: str | pathlib.Path) -> tuple[list[ModelRecord], spec_lib.ModelIO, str]:
  """Read a zoo written by `save_zoo`; return its records, interface and task name."""
  directory = pathlib.Path(directory).absolute()
  index = json.loads((directory / "zoo.json").read_text())
  io = spec_lib.ModelIO(**index["io"])
  specs = [spec_lib.ModelSpec.from_dict(m["spec"]) for m in index["models"]]
  like = {}
  for entry, s in zip(index["models"], specs):
    shapes = own_shapes(s, io)
    params = {n: jax.ShapeDtypeStruct(shape, np.float32) for n, shape in shapes.items()}
    steps = json.loads((directory / "specs" / f"{entry['id']}.json").read_text())
    del steps
    like[entry["id"]] = {"params": params, "init_params": params, "curve": None}
  checkpointer = ocp.StandardCheckpointer()
  metadata = checkpointer.metadata(directory / "arrays")
  tree_metadata = getattr(metadata, "item_metadata", metadata)
  for name in like:
    curve = tree_metadata[name]["curve"]
    like[name]["curve"] = jax.ShapeDtypeStruct(tuple(curve.shape), np.float32)
  restored = checkpointer.restore(directory / "arrays", like)
  records = []
  for entry, s in zip(index["models"], specs):
    arrays = restored[entry["id"]]
    records.append(ModelRecord(
        spec=s, params={k: np.asarray(v) for k, v in arrays["params"].items()},
        init_params={k: np.asarray(v) for k, v in arrays["init_params"].items()},
        curve=np.asarray(arrays["curve"]), metrics=entry["metrics"]))
  return records, io, index["task"]
