"""Architecture and attention generators, and the searches that compare them with baselines."""

from autogan_jax.architecture import attention
from autogan_jax.architecture import search
from autogan_jax.architecture.search import METHODS
from autogan_jax.architecture.search import SearchConfig
from autogan_jax.architecture.search import SearchResult
from autogan_jax.architecture.search import run_search

__all__ = ["METHODS", "SearchConfig", "SearchResult", "attention", "run_search", "search"]
