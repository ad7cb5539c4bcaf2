"""Weight space: permutation, alignment, combination and interpolation of networks.

A network is an ordered tuple of `Layer`s (a kind plus a parameter dict), so
models are data that can be reordered, permuted, aligned by weight matching,
combined module by module and merged. G_permute, G_combine and G_interpolate
propose orders, hybrids and per-layer merges, and their discriminators judge
them, through the shared adversarial step of `autogan_jax.gan`. In
`hybrid_judge`, D_combine learns from scored hybrids whether a hybrid beats
its parents and G_combine is trained on that judgement.
"""

from autogan_jax.weight_space import adversarial
from autogan_jax.weight_space import combine_search
from autogan_jax.weight_space import hybrid_judge
from autogan_jax.weight_space import interpolate_search
from autogan_jax.weight_space import permute_search
from autogan_jax.weight_space.alignment import align
from autogan_jax.weight_space.alignment import interpolation_losses
from autogan_jax.weight_space.alignment import lerp_networks
from autogan_jax.weight_space.alignment import loss_barrier
from autogan_jax.weight_space.alignment import weight_matching
from autogan_jax.weight_space.combination import layer_range_hybrid
from autogan_jax.weight_space.combination import mix_modules
from autogan_jax.weight_space.combination import module_hybrid
from autogan_jax.weight_space.interpolation import METHODS
from autogan_jax.weight_space.interpolation import dare
from autogan_jax.weight_space.interpolation import linear
from autogan_jax.weight_space.interpolation import slerp
from autogan_jax.weight_space.interpolation import task_arithmetic
from autogan_jax.weight_space.interpolation import ties
from autogan_jax.weight_space.interpolation import tree_merge
from autogan_jax.weight_space.network import Layer
from autogan_jax.weight_space.network import Network
from autogan_jax.weight_space.network import apply_network
from autogan_jax.weight_space.network import check_network
from autogan_jax.weight_space.network import init_mlp
from autogan_jax.weight_space.network import init_transformer
from autogan_jax.weight_space.permutation import PermutationSpec
from autogan_jax.weight_space.permutation import apply_module_sequence
from autogan_jax.weight_space.permutation import apply_ordered
from autogan_jax.weight_space.permutation import mlp_permutation_spec
from autogan_jax.weight_space.permutation import permute
from autogan_jax.weight_space.permutation import reorder
from autogan_jax.weight_space.permutation import transformer_permutation_spec

__all__ = [
    "Layer", "METHODS", "Network", "PermutationSpec", "adversarial", "align",
    "apply_module_sequence", "apply_network", "apply_ordered", "check_network",
    "combine_search", "dare", "hybrid_judge", "init_mlp", "init_transformer", "interpolate_search",
    "interpolation_losses", "layer_range_hybrid", "lerp_networks", "linear", "loss_barrier",
    "mix_modules", "mlp_permutation_spec", "module_hybrid", "permute", "permute_search",
    "reorder", "slerp", "task_arithmetic", "ties", "transformer_permutation_spec", "tree_merge",
    "weight_matching",
]
