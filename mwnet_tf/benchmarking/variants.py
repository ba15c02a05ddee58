"""The training steps `mwnet_tf.bench` compares, by name (no TensorFlow: the command checks
its flags against these names before importing anything heavy)."""

from __future__ import annotations

# name -> (method, its hyperparameters): the steps compared, built through `mwnet_tf.methods`
# exactly as the trainer builds them. mwnet_interval's K (None here) is --meta_interval.
VARIANTS = {"ce": ("ce", {}), "mwnet": ("mwnet", {}),
            "mwnet_head": ("mwnet", {"meta_scope": "head"}),
            "mwnet_interval": ("mwnet", {"meta_interval": None}), "l2rw": ("l2rw", {})}
LABELS = {"ce": "plain (cross-entropy)", "mwnet": "MW-Net, exact",
          "mwnet_head": "MW-Net, --meta_scope=head", "mwnet_interval": "MW-Net, --meta_interval",
          "l2rw": "L2RW"}
