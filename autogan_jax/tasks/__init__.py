"""Level 0: the task protocol, task families and the real data sets behind them."""

from autogan_jax.tasks import datasets
from autogan_jax.tasks.base import FlatTask
from autogan_jax.tasks.base import Task
from autogan_jax.tasks.char_lm import CharLMTask
from autogan_jax.tasks.char_lm import char_task
from autogan_jax.tasks.families import CharFamily
from autogan_jax.tasks.families import DigitsFamily
from autogan_jax.tasks.families import heldout_char_tasks
from autogan_jax.tasks.families import heldout_digits_tasks
from autogan_jax.tasks.families import meta_train_family
from autogan_jax.tasks.gated_digits import GatedDigitsTask
from autogan_jax.tasks.gated_digits import gated_digits_task
from autogan_jax.tasks.mlp import ACTIVATIONS
from autogan_jax.tasks.mlp import DigitsMLPTask
from autogan_jax.tasks.mlp import digits_task
from autogan_jax.tasks.quadratic import QuadraticTask
from autogan_jax.tasks.quadratic import quadratic_task

__all__ = [
    "ACTIVATIONS", "CharFamily", "CharLMTask", "DigitsFamily", "DigitsMLPTask", "FlatTask",
    "GatedDigitsTask", "QuadraticTask", "Task", "char_task", "datasets", "digits_task",
    "gated_digits_task", "heldout_char_tasks", "heldout_digits_tasks", "meta_train_family",
    "quadratic_task",
]
