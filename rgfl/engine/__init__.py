"""Training engine behind ``rgfl train``.

- ``config``: YAML configs -> typed dataclasses, ``--set`` overrides, validation with suggestions.
- ``schedule``: linear lr scaling rule, warmup + step decay (1x).
- ``sampler``: deterministic, resumable, distributed batch order; per-sample seeding.
- ``checkpoint``: atomic save, validated load, RNG state capture.
- ``distributed``: torchrun process-group set-up and small collectives.
- ``build``: config sections -> detector, dataset, optimizer; ``load_detector`` for inference.
- ``train``: the loop (``train``, ``Trainer``); ``validation``: AP during training.
- ``metrics``: JSON-lines log and TensorBoard scalars.

Nothing heavy is imported here; import the submodules.
"""
