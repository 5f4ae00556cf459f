"""Training and export tools for edgeexit bundles (needs the ``[tools]`` extra: TensorFlow/Keras).

Run them as modules from the repository root, e.g. ``python -m tools.train_demo``.
Nothing in ``edgeexit/`` imports this package.
"""
