"""Pieces every launcher shares: the workdir, metrics, reports, progress logs and config checks."""

from __future__ import annotations

import datetime
import json
import logging as py_logging
import math
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

import autogan_jax
from autogan_jax.core import validation


class _DropLibraryInfo(py_logging.Filter):
  """Drops INFO and DEBUG records that orbax and its storage layer log on every save."""

  _PREFIXES = ("orbax", "etils", "tensorstore")

  def filter(self, record: py_logging.LogRecord) -> bool:
    if record.levelno >= py_logging.WARNING:
      return True
    path = record.pathname.replace("\\", "/")
    return not any(f"/{prefix}/" in path for prefix in self._PREFIXES)


def quiet_library_logs() -> None:
  """Keep the run's log to its own progress lines: checkpoint libraries log only warnings."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _DropLibraryInfo) for f in handler.filters):
    handler.addFilter(_DropLibraryInfo())


class _DefinedFlag:
  """The value of a flag that another launcher module already defined."""

  def __init__(self, name: str):
    self._name = name

  @property
  def value(self) -> Any:
    return getattr(flags.FLAGS, self._name)


def define_run_flags(default_config: str, default_workdir: str | None, help_config: str,
                     help_workdir: str):
  """Define a launcher's `--config` and `--workdir` flags; return their holders.

  Tests import several launchers into one process, and absl rejects a flag name
  defined twice. The second launcher then reads the flags the first defined;
  only the module run with `python -m` sets the defaults of a real run.
  """
  if "config" in flags.FLAGS:
    config = _DefinedFlag("config")
  else:
    try:
      # The config flag applies `--config.FIELD` overrides from sys.argv as it is defined.
      config = config_flags.DEFINE_config_file("config", default_config, help_config)
    except (AttributeError, KeyError) as error:
      _exit_unknown_field(error, sys.argv)
  if "workdir" in flags.FLAGS:
    workdir = _DefinedFlag("workdir")
  else:
    workdir = flags.DEFINE_string("workdir", default_workdir, help_workdir)
  return config, workdir


def _exit_unknown_field(error: Exception, argv: list[str]) -> None:
  """End the process with a message naming the `--config.FIELD` the preset lacks.

  ml_collections raises a bare AttributeError or KeyError that names only the
  missing key.
  """
  name = str(error).strip("\"'")
  overrides = [arg for arg in argv[1:] if arg.lstrip("-").startswith("config.")]
  named = [arg for arg in overrides if name in arg] or overrides
  sys.stderr.write(
      f"FATAL Flags parsing error: unknown config field {name!r} in {' '.join(named)}. "
      "A --config.FIELD override must name a field that the preset defines; the config "
      "file passed to --config lists them.\n"
      "Pass --helpshort or --helpfull to see help on flags.\n")
  sys.exit(1)


def _preset_value_hint(message: str) -> str:
  """Name the preset's value and type of the `--config.FIELD` that failed to parse, if known."""
  match = re.match(r"flag --config\.([\w.]+)=", message)
  if match is None or "config" not in flags.FLAGS:
    return ""
  try:
    value = flags.FLAGS["config"].value
    for part in match.group(1).split("."):
      value = value[part]
  except (AttributeError, KeyError, TypeError):
    return ""
  return (f" The preset sets config.{match.group(1)} to {value!r} ({type(value).__name__}); "
          "pass a value of that type.")


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    message = str(error)
    hint = _preset_value_hint(message)
    if hint:
      message = message.rstrip(". ") + "." + hint
    if "Traceback (most recent call last)" in message:
      # A config file that raised embeds its traceback, so only the exception's last line is kept.
      head = message.split("Traceback (most recent call last)")[0].strip()
      message = f"{head} {message.strip().splitlines()[-1]}"
    sys.stderr.write(f"FATAL Flags parsing error: {message}\n"
                     "Pass --helpshort or --helpfull to see help on flags.\n")
    sys.exit(1)
  except (AttributeError, KeyError) as error:
    _exit_unknown_field(error, argv)


def run_main(main) -> None:
  """`app.run(main)`, with clear messages for an unknown config field or an invalid value.

  A `ConfigError` raised by `main` (they are raised before any compute) ends
  the run with its message and exit status 1 instead of a traceback. Orbax and
  its storage layer log only warnings.
  """

  def checked_main(argv):
    quiet_library_logs()
    try:
      return main(argv)
    except validation.ConfigError as error:
      sys.stderr.write(f"FATAL Invalid config:\n{error}\n")
      sys.exit(1)

  app.run(checked_main, flags_parser=_parse_flags)


def prepare_workdir(path: str | pathlib.Path) -> pathlib.Path:
  """Create the run folder if needed and return it as an absolute path."""
  if not str(path):
    raise ValueError("--workdir is empty; pass the folder where the run writes its files.")
  workdir = pathlib.Path(path).expanduser().absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  return workdir


def start_run(path: str | pathlib.Path, config, may_differ: tuple[str, ...] = ()) -> pathlib.Path:
  """Create or reopen the run folder `path` for `config`, and return it as an absolute path.

  Finished parts of a run are reused by name on a rerun, so a folder that contains
  a run of another config is rejected with a `ConfigError` before any compute.
  """
  workdir = prepare_workdir(path)
  check_workdir_config(workdir, config, may_differ)
  record_code_version(workdir)
  return workdir


def code_version() -> str:
  """Return the package version, plus the git commit and "-dirty" for uncommitted changes."""
  repo = pathlib.Path(__file__).resolve().parents[1]
  try:
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                            capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    changes = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                              "--untracked-files=no"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return autogan_jax.__version__
  return f"{autogan_jax.__version__}+git{commit}{'-dirty' if changes.strip() else ''}"


def record_code_version(workdir: pathlib.Path) -> str:
  """Append this start's code version to `runs.jsonl`, and warn when the last start's differs.

  A resumed run reuses the parts an earlier start finished, so the log records
  which code wrote which part.
  """
  version = code_version()
  path = workdir / "runs.jsonl"
  earlier = []
  if path.exists():
    for line in path.read_text().splitlines():
      try:
        earlier.append(json.loads(line)["code_version"])
      except (json.JSONDecodeError, KeyError, TypeError):
        continue
  if earlier and earlier[-1] != version:
    logging.warning("%s was last started by code version %s; this start is %s. Parts "
                    "finished before are reused as they are.", workdir, earlier[-1], version)
  started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  with path.open("a") as f:
    f.write(json.dumps({"started": started, "code_version": version}) + "\n")
  return version


def to_builtin(value: Any) -> Any:
  """Convert arrays and numpy scalars in nested containers into JSON-ready Python values.

  Non-finite floats become None, because JSON has no NaN or infinity.
  """
  if isinstance(value, Mapping):
    return {str(k): to_builtin(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_builtin(v) for v in value]
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    array = np.asarray(value)
    if array.ndim == 0:
      return to_builtin(array.item())
    return [to_builtin(v) for v in array.tolist()]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


class MetricsLog:
  """`metrics.jsonl` in the workdir: one JSON record per line, each with a `step`.

  On resume, `truncate_after(step)` drops the records written after the restored
  checkpoint, so a resumed run's log equals an uninterrupted run's.
  """

  def __init__(self, workdir: pathlib.Path, name: str = "metrics.jsonl"):
    self.path = workdir / name

  def append(self, record: Mapping[str, Any]) -> None:
    with self.path.open("a") as f:
      f.write(json.dumps(to_builtin(record)) + "\n")

  def read(self) -> list[dict[str, Any]]:
    if not self.path.exists():
      return []
    records = []
    for line in self.path.read_text().splitlines():
      if line.strip():
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          # A run killed mid-write leaves a partial last line; it is dropped.
          logging.warning("Dropping an unreadable line of %s.", self.path)
    return records

  def truncate_after(self, phase: str, step: int) -> None:
    """Keep records of other phases, and those of `phase` up to `step`."""
    kept = [r for r in self.read() if r.get("phase") != phase or r.get("step", 0) <= step]
    self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for name, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{name}."))
    else:
      flat[f"{prefix}{name}"] = value
  return flat


def check_workdir_config(workdir: pathlib.Path, config, may_differ: tuple[str, ...] = ()) -> None:
  """Write config.json, or raise ConfigError when the workdir contains a run of another config.

  Checkpoints of another config would resume into the wrong run, so the
  workdir must be new or hold a run of the same config. Fields named in
  `may_differ` (logging and checkpoint cadence, say) do not count.
  """
  path = workdir / "config.json"
  current = _flatten(json.loads(config.to_json_best_effort()))
  if path.exists():
    saved = _flatten(json.loads(path.read_text()))
    changed = sorted(k for k in set(saved) | set(current)
                     if saved.get(k) != current.get(k) and k not in may_differ)
    if changed:
      raise validation.ConfigError(
          f"Invalid --workdir {workdir}: it contains a run of another config (fields that "
          f"differ: {', '.join(changed)}). Use a new --workdir, or delete that folder to start "
          "over.")
  path.write_text(config.to_json_best_effort(indent=2) + "\n")


class PhaseClock:
  """Wall-clock and process CPU seconds of each phase of a run, in this process."""

  def __init__(self):
    self.laps: dict[str, dict[str, float]] = {}
    self._wall, self._cpu = time.perf_counter(), time.process_time()

  def lap(self, name: str) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    self.laps[name] = {"wall_s": wall - self._wall, "cpu_s": cpu - self._cpu}
    logging.info("%s took %.1f s (%.1f s of CPU time).", name, wall - self._wall,
                 cpu - self._cpu)
    self._wall, self._cpu = wall, cpu


def write_report(workdir: pathlib.Path, report: Mapping[str, Any], markdown: str) -> None:
  """Write `report.json` and `report.md`."""
  (workdir / "report.json").write_text(json.dumps(to_builtin(report), indent=2) + "\n")
  (workdir / "report.md").write_text(markdown)


class Progress:
  """Logs step, rate and ETA of a long loop through absl logging, at most every `every_s`."""

  def __init__(self, name: str, total: int, start: int = 0, every_s: float = 10.0):
    self._name = name
    self._total = total
    self._start_step = start
    self._start_time = time.perf_counter()
    self._last_log = -math.inf
    self._every_s = every_s

  def update(self, step: int, **metrics: float) -> None:
    if time.perf_counter() - self._last_log < self._every_s and step < self._total:
      return
    # Reading the metrics waits for the device, so the clock is read after it.
    values = {k: float(v) for k, v in metrics.items()}
    now = time.perf_counter()
    self._last_log = now
    done = step - self._start_step
    elapsed = now - self._start_time
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (self._total - step) / rate if rate > 0 else math.inf
    extra = " ".join(f"{k}={v:.4g}" for k, v in values.items())
    logging.info("%s step %d/%d, %.2f steps/s, ETA %.0f s %s", self._name, step, self._total,
                 rate, eta, extra)


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
  """Render a markdown table; floats get four significant digits and None an em dash."""

  def cell(value: Any) -> str:
    if value is None:
      return "—"
    if isinstance(value, float):
      return f"{value:.4g}"
    return str(value)

  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"
