"""What a model costs to train and to serve, and how to make serving cheaper.

- Profiling (:mod:`toolkit.cost.profile`): ``count_parameters``, ``count_flops``,
  ``activation_memory_bytes``, ``model_size_bytes``, ``profile_model``, ``measure_latency`` and
  ``compare_latency`` (median and quartiles over repeats, throughput), ``time_phases``.
- Training memory (:mod:`toolkit.cost.memory`): ``training_memory`` (weights, gradients, optimizer
  state and activations of a training step, in bytes).
- Training cost (:mod:`toolkit.cost.meter`): the ``CostMeter`` callback, ``CostAssumptions`` (power,
  price), ``break_even_predictions`` and ``cost_table``.
- Compression (:mod:`toolkit.cost.compress`): ``quantize_int8`` (torchao or the legacy eager path),
  ``prune_model`` / ``pruning_callback`` (``torch.nn.utils.prune``, Lightning's ``ModelPruning``),
  ``LowPrecision`` (bf16), ``compile_model``.
- Distillation (:mod:`toolkit.cost.distill`): ``distillation_loss`` and ``DistillationModule``.
"""

from toolkit.cost.compress import (BACKENDS, PRUNABLE_LAYERS, LowPrecision, PruneOnce, compile_model, has_c_compiler,
                                   prunable_weights, prune_model, pruning_callback, quantize_int8, weight_sparsity)
from toolkit.cost.distill import DistillationModule, distillation_loss
from toolkit.cost.memory import MEMORY_PARTS, training_memory
from toolkit.cost.meter import CostAssumptions, CostMeter, break_even_predictions, cost_table
from toolkit.cost.profile import (activation_memory_bytes, compare_latency, count_flops, count_parameters,
                                  measure_latency, model_size_bytes, profile_model, time_phases)

__all__ = [
    "BACKENDS",
    "PRUNABLE_LAYERS",
    "CostAssumptions",
    "CostMeter",
    "DistillationModule",
    "LowPrecision",
    "MEMORY_PARTS",
    "PruneOnce",
    "activation_memory_bytes",
    "break_even_predictions",
    "compare_latency",
    "compile_model",
    "cost_table",
    "count_flops",
    "count_parameters",
    "distillation_loss",
    "has_c_compiler",
    "measure_latency",
    "model_size_bytes",
    "profile_model",
    "prunable_weights",
    "prune_model",
    "pruning_callback",
    "quantize_int8",
    "time_phases",
    "training_memory",
    "weight_sparsity",
]
